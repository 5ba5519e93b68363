# Independent reference of the algorithm documented on EdgeDiffusion.Schedulers.GaussianNoise, written from that
# description (SplitMix64 seeding, xoshiro256**, Marsaglia polar with float rounding) in Python integers and math.log.
# GaussianNoiseTests' expected values come from its output: python3 gaussian_noise_reference.py
import math, struct
M=(1<<64)-1
def splitmix(state):
    state=(state+0x9E3779B97F4A7C15)&M
    z=state
    z=((z^(z>>30))*0xBF58476D1CE4E5B9)&M
    z=((z^(z>>27))*0x94D049BB133111EB)&M
    return state, z^(z>>31)
def rotl(x,k): return ((x<<k)|(x>>(64-k)))&M
class X:
    def __init__(s,seed):
        st=seed; s.s=[]
        for _ in range(4):
            st,v=splitmix(st); s.s.append(v)
    def next(s):
        s0,s1,s2,s3=s.s
        r=(rotl((s1*5)&M,7)*9)&M
        t=(s1<<17)&M
        s2^=s0; s3^=s1; s1^=s2; s0^=s3; s2^=t; s3=rotl(s3,45)
        s.s=[s0,s1,s2,s3]
        return r
def f32(x): return struct.unpack('f',struct.pack('f',x))[0]
def normals(seed,n):
    g=X(seed); out=[]
    while len(out)<n:
        while True:
            u=(g.next()>>11)*2.0**-52-1.0
            v=(g.next()>>11)*2.0**-52-1.0
            s=u*u+v*v
            if 0<s<1: break
        f=math.sqrt(-2*math.log(s)/s)
        out+= [f32(u*f), f32(v*f)]
    return out[:n]
st=1234567
for _ in range(5):
    st,v=splitmix(st); print(v)
g=X(42); print([g.next() for _ in range(3)])
print([repr(x) for x in normals(42,8)])
print([repr(x) for x in normals(0,4)])
