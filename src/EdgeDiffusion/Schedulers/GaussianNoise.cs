using System.Runtime.CompilerServices;
namespace EdgeDiffusion.Schedulers;

/// <summary>
/// Seeded standard normal noise that is bit-identical on every run, runtime and platform.
/// <para>Algorithm (all integer arithmetic is on unsigned 64-bit words, wrapping):</para>
/// <list type="number">
/// <item>Seeding: SplitMix64 (Steele, Lea &amp; Flood 2014) from the seed: state += 0x9E3779B97F4A7C15; z = state;
/// z = (z ^ (z &gt;&gt; 30)) · 0xBF58476D1CE4E5B9; z = (z ^ (z &gt;&gt; 27)) · 0x94D049BB133111EB; output z ^ (z &gt;&gt; 31).
/// Its first four outputs are the state s0..s3 of the generator.</item>
/// <item>Generator: xoshiro256** (Blackman &amp; Vigna 2018): output = rotl(s1 · 5, 7) · 9; then t = s1 &lt;&lt; 17;
/// s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 45).</item>
/// <item>Uniform: u = (output &gt;&gt; 11) · 2⁻⁵² − 1, a multiple of 2⁻⁵² in [−1, 1) (exact in double).</item>
/// <item>Normal pair, Marsaglia's polar method: draw u then v; s = u·u + v·v; redraw both unless 0 &lt; s &lt; 1;
/// f = √(−2·ln(s)/s); the values are u·f then v·f, each rounded to the nearest float.</item>
/// <item>ln s is computed by <see cref="PortableMath.Log"/> from + − × ÷ only (see there), never the platform's libm,
/// whose last bit differs between systems; √ is IEEE correctly rounded everywhere. .NET does not fuse a·b + c into FMA,
/// so each double operation rounds exactly as written.</item>
/// </list>
/// The stream does not depend on how it is split into <see cref="Fill"/> calls: the second value of a pair is kept for the next call.
/// </summary>
public sealed class GaussianNoise : INoiseSource
{
    private Xoshiro256StarStar _generator;
    private float _spare;
    private bool _hasSpare;

    public GaussianNoise(ulong seed)
    {
        Seed = seed;
        _generator = Xoshiro256StarStar.FromSeed(seed);
    }

    public ulong Seed { get; }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Fill(Span<float> destination)
    {
        int i = 0;
        if (_hasSpare && destination.Length > 0)
        {
            destination[i++] = _spare;
            _hasSpare = false;
        }
        while (i < destination.Length)
        {
            NextPair(out float first, out float second);
            destination[i++] = first;
            if (i < destination.Length) destination[i++] = second;
            else
            {
                _spare = second;
                _hasSpare = true;
            }
        }
    }

    /// <summary>One standard normal value.</summary>
    public float Next()
    {
        Span<float> one = stackalloc float[1];
        Fill(one);
        return one[0];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void NextPair(out float first, out float second)
    {
        double u, v, s;
        do
        {
            u = _generator.NextSigned();
            v = _generator.NextSigned();
            s = u * u + v * v;
        }
        while (s >= 1 || s == 0);
        double f = Math.Sqrt(-2 * PortableMath.Log(s) / s);
        first = (float)(u * f);
        second = (float)(v * f);
    }
}

/// <summary>xoshiro256** seeded by SplitMix64; see <see cref="GaussianNoise"/>.</summary>
internal struct Xoshiro256StarStar
{
    private ulong _s0, _s1, _s2, _s3;

    public Xoshiro256StarStar(ulong s0, ulong s1, ulong s2, ulong s3) => (_s0, _s1, _s2, _s3) = (s0, s1, s2, s3);

    public static Xoshiro256StarStar FromSeed(ulong seed)
    {
        ulong state = seed;
        return new Xoshiro256StarStar(SplitMix64(ref state), SplitMix64(ref state), SplitMix64(ref state), SplitMix64(ref state));
    }

    public static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong Next()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>A uniform multiple of 2⁻⁵² in [−1, 1): the top 53 bits scaled, minus one (both steps exact).</summary>
    public double NextSigned() => (Next() >> 11) * (1.0 / (1UL << 52)) - 1.0;
}

/// <summary>Elementary functions built only from IEEE-exact operations, so their results are the same on every platform.</summary>
internal static class PortableMath
{
    private const double Ln2Hi = 6.93147180369123816490e-01; // the leading 32 bits of ln 2 (fdlibm's ln2_hi): e·Ln2Hi is exact for |e| < 2^21
    private const double Ln2Lo = 1.90821492927058770002e-10; // ln 2 − Ln2Hi
    private const double Sqrt2 = 1.4142135623730951;

    /// <summary>
    /// Natural logarithm to within ~2 ulp, deterministic: write x = m·2^e with m in [√½, √2) by reading the exponent bits;
    /// then ln x = e·ln 2 + ln m with ln m = 2·atanh(f) = 2(f + f³/3 + f⁵/5 + ... + f²³/23), f = (m − 1)/(m + 1), |f| ≤ 0.1716
    /// (the omitted terms are below 2⁻⁶⁰ relative). ln 2 is split in two parts so e·ln 2 keeps full precision.
    /// Returns NaN for x &lt; 0 or NaN, −∞ for 0 and +∞ for +∞.
    /// </summary>
    public static double Log(double x)
    {
        if (double.IsNaN(x) || x < 0) return double.NaN;
        if (x == 0) return double.NegativeInfinity;
        if (double.IsPositiveInfinity(x)) return x;

        int e = 0;
        if (double.IsSubnormal(x)) // scale into the normal range first
        {
            x *= 18014398509481984.0; // 2^54
            e = -54;
        }
        long bits = BitConverter.DoubleToInt64Bits(x);
        e += (int)((bits >> 52) & 0x7FF) - 1023;
        double m = BitConverter.Int64BitsToDouble((bits & 0x000F_FFFF_FFFF_FFFFL) | 0x3FF0_0000_0000_0000L); // [1, 2)
        if (m > Sqrt2)
        {
            m *= 0.5;
            e += 1;
        }
        double f = (m - 1) / (m + 1);
        double z = f * f;
        double series = 1.0 / 23;
        for (int k = 21; k >= 1; k -= 2) series = series * z + 1.0 / k;
        double lnM = 2 * f * series;
        return e * Ln2Hi + (e * Ln2Lo + lnM);
    }
}
