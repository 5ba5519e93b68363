using System.Runtime.CompilerServices;

namespace EdgeDiffusion.Schedulers;

/// <summary>Which of torch's CPU normal_ kernels <see cref="TorchNoise"/> reproduces for tensors of 16 or more elements.</summary>
public enum TorchCpuKernel
{
    /// <summary>
    /// The AVX2 kernel (torch's CPU capability "AVX2", what x86-64 builds pick on AVX2 machines unless told otherwise):
    /// log and sin/cos from avx_mathfun.h (Cephes polynomials in float).
    /// </summary>
    Avx2,

    /// <summary>The portable kernel (capability "DEFAULT", e.g. ATEN_CPU_CAPABILITY=default): the C library's float logf, cosf and sinf.</summary>
    Scalar,
}

/// <summary>
/// The values <c>torch.randn(shape, generator=torch.Generator().manual_seed(seed))</c> gives on the CPU, bit for bit.
/// <para>
/// torch's result depends on the size of the whole tensor, so one <see cref="Fill"/> (or <see cref="Randn"/>) is one
/// <c>torch.randn</c> call: filling a span of N floats gives what <c>torch.randn(N)</c> (any shape of N elements, as
/// randn fills a contiguous tensor in order) gives, and successive calls continue the generator as successive randn
/// calls on the same generator do. Filling 100 floats in one call and in two calls of 50 therefore differ, as in torch.
/// </para>
/// <para>Algorithm (torch's CPUGeneratorImpl and normal_ kernel, aten/src/ATen/native/cpu/DistributionTemplates.h):</para>
/// <list type="number">
/// <item>Generator: MT19937 seeded by init_genrand with the seed's low 32 bits (<see cref="Mt19937"/>); a 64-bit draw
/// is two 32-bit outputs, the first as the high word.</item>
/// <item>N &lt; 16 (scalar path): each value is Box–Muller in double: u1, u2 = (64-bit draw &amp; (2⁵³ − 1)) · 2⁻⁵³;
/// r = √(−2·ln(1 − u2)); θ = 2π·u1; the value is r·cos θ and r·sin θ is kept in the generator for the next scalar
/// value, even one of a later call (a vector fill neither uses nor clears it); each value is rounded to float.</item>
/// <item>N ≥ 16 (vector path): first N uniforms (32-bit draw &amp; (2²⁴ − 1)) · 2⁻²⁴ in float, then every whole block
/// of 16: for j &lt; 8, u1 = 1 − d[j], u2 = d[j + 8], radius = √(−2·ln u1), θ = float(2π)·u2, d[j] = radius·cos θ and
/// d[j + 8] = radius·sin θ, in float. When N is not a multiple of 16, 16 fresh uniforms overwrite the last 16 elements
/// and that block is transformed again.</item>
/// <item>ln, cos and sin of the vector path are those of the selected <see cref="TorchCpuKernel"/>: for
/// <see cref="TorchCpuKernel.Avx2"/>, avx_mathfun's Cephes-style polynomials, reproduced here operation by operation in
/// float with the fused multiply-adds the compiled kernel has (each .NET float operation rounds once, as each AVX/FMA
/// instruction does; .NET never fuses on its own), so the values are the same on every platform; for <see cref="TorchCpuKernel.Scalar"/>, .NET's MathF (the platform's logf, cosf, sinf: bit-equal to torch
/// on Linux/glibc). The double path uses Math.Log/Sin/Cos (the platform's libm, as torch does); they are rounded to
/// float at the end, so a last-bit libm difference almost never shows.</item>
/// </list>
/// Verified bit for bit against torch 1.13 (both kernels) by tests/EdgeDiffusion.Tests/Schedulers/Fixtures/noise-reference.json
/// (made by training/fixtures/make_noise_fixtures.py). Other torch CPU kernels (ARM's, AVX-512 builds) may differ in the
/// last bit for N ≥ 16.
/// </summary>
public sealed class TorchNoise : INoiseSource
{
    private readonly Mt19937 _generator;
    private double _cachedNormal;
    private bool _hasCachedNormal;

    public TorchNoise(ulong seed, TorchCpuKernel kernel = TorchCpuKernel.Avx2)
    {
        Seed = seed;
        Kernel = kernel;
        _generator = new Mt19937((uint)seed);
    }

    public ulong Seed { get; }

    public TorchCpuKernel Kernel { get; }

    /// <summary>One <c>torch.randn(destination.Length)</c> call on this generator (see the class remarks).</summary>
    public void Fill(Span<float> destination)
    {
        if (destination.Length >= 16) FillVectorised(destination);
        else
            for (int i = 0; i < destination.Length; i++) destination[i] = (float)NextDoubleNormal();
    }

    /// <summary>One <c>torch.randn(*shape)</c> call on this generator, flattened in torch's (row-major) order.</summary>
    public float[] Randn(params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long count = 1;
        foreach (int d in shape)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(d, nameof(shape));
            count *= d;
        }
        var values = new float[checked((int)count)];
        Fill(values);
        return values;
    }

    private double NextDoubleNormal()
    {
        if (_hasCachedNormal)
        {
            _hasCachedNormal = false;
            return _cachedNormal + 0.0; // transformation::normal: value · std + mean with std 1, mean 0
        }
        double u1 = NextUniformDouble();
        double u2 = NextUniformDouble();
        double r = Math.Sqrt(-2.0 * Math.Log(1.0 - u2));
        double theta = 2.0 * Math.PI * u1;
        _cachedNormal = r * Math.Sin(theta);
        _hasCachedNormal = true;
        return r * Math.Cos(theta) + 0.0;
    }

    private double NextUniformDouble()
    {
        ulong high = _generator.Next(), low = _generator.Next();
        return (((high << 32) | low) & ((1UL << 53) - 1)) * (1.0 / (1UL << 53));
    }

    private float NextUniformFloat() => (_generator.Next() & ((1u << 24) - 1)) * (1.0f / (1 << 24));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void FillVectorised(Span<float> data)
    {
        int n = data.Length;
        for (int i = 0; i < n; i++) data[i] = NextUniformFloat();
        for (int i = 0; i + 16 <= n; i += 16) Transform16(data.Slice(i, 16));
        if (n % 16 != 0)
        {
            var last = data.Slice(n - 16, 16);
            for (int i = 0; i < 16; i++) last[i] = NextUniformFloat();
            Transform16(last);
        }
    }

    private void Transform16(Span<float> d)
    {
        for (int j = 0; j < 8; j++)
        {
            float u1 = 1f - d[j];
            float u2 = d[j + 8];
            float cos, sin;
            if (Kernel == TorchCpuKernel.Avx2)
            {
                float radius = MathF.Sqrt(-2f * Avx2Math.Log(u1));
                Avx2Math.SinCos(Avx2Math.TwoPi * u2, out sin, out cos);
                d[j] = radius * cos + 0f; // _mm256_fmadd_ps(n, std = 1, mean = 0): exact, but −0 becomes +0
                d[j + 8] = radius * sin + 0f;
            }
            else
            {
                float radius = MathF.Sqrt(-2f * MathF.Log(u1));
                float theta = (float)(2.0 * Math.PI * u2);
                d[j] = radius * MathF.Cos(theta) * 1f + 0f;
                d[j + 8] = radius * MathF.Sin(theta) * 1f + 0f;
            }
        }
    }
}

/// <summary>
/// torch's avx_mathfun.h log and sincos (Pommier's sse_mathfun after Cephes' logf/sinf/cosf) for one lane, written
/// from their description: the same constants (float roundings of the double literals), the same operations in the same
/// order, each rounded to float. torch compiles its AVX2 kernels with FMA enabled and GCC's default floating-point
/// contraction, which fuses each product whose only use is an addition or subtraction into one fused multiply-add (one
/// rounding): those are written as <see cref="MathF.FusedMultiplyAdd"/> here, the other products and sums stay separate
/// (matching torch bit for bit on 3 million values; the unfused form differs in about 1 % of them by one ulp).
/// The inputs here are in (0, 1] for <see cref="Log"/> and [0, 2π) for <see cref="SinCos"/>.
/// </summary>
internal static class Avx2Math
{
    public const float TwoPi = (float)(2.0 * Math.PI);

    private const float SqrtHalf = (float)0.707106781186547524;
    private const float LogP0 = (float)7.0376836292E-2, LogP1 = (float)-1.1514610310E-1, LogP2 = (float)1.1676998740E-1;
    private const float LogP3 = (float)-1.2420140846E-1, LogP4 = (float)1.4249322787E-1, LogP5 = (float)-1.6668057665E-1;
    private const float LogP6 = (float)2.0000714765E-1, LogP7 = (float)-2.4999993993E-1, LogP8 = (float)3.3333331174E-1;
    private const float LogQ1 = (float)-2.12194440e-4, LogQ2 = (float)0.693359375;
    private const float MinusDp1 = (float)-0.78515625, MinusDp2 = (float)-2.4187564849853515625e-4, MinusDp3 = (float)-3.77489497744594108e-8;
    private const float SinP0 = (float)-1.9515295891E-4, SinP1 = (float)8.3321608736E-3, SinP2 = (float)-1.6666654611E-1;
    private const float CosP0 = (float)2.443315711809948E-005, CosP1 = (float)-1.388731625493765E-003, CosP2 = (float)4.166664568298827E-002;
    private const float FourOverPi = (float)1.27323954473516;
    private const int SignBit = unchecked((int)0x80000000);

    /// <summary>
    /// ln x: x = m·2^e with m in [½, 1) read from the bits; when m &lt; √½, e −= 1 and m = 2m; with t = m − 1 the result is
    /// t + (t³·P(t) + e·q1 − t²/2) + e·q2, P a degree-8 polynomial and q1 + q2 = ln 2. NaN for x ≤ 0.
    /// </summary>
    public static float Log(float x)
    {
        bool invalid = !(x > 0);
        x = MathF.Max(x, BitConverter.Int32BitsToSingle(0x00800000)); // the smallest normal float
        int bits = BitConverter.SingleToInt32Bits(x);
        int exponent = (int)((uint)bits >> 23) - 0x7F;
        x = BitConverter.Int32BitsToSingle((bits & ~0x7F800000) | BitConverter.SingleToInt32Bits(0.5f));
        float e = exponent;
        e += 1f;
        bool small = x < SqrtHalf;
        float tmp = small ? x : 0f;
        x -= 1f;
        e -= small ? 1f : 0f;
        x += tmp;

        float z = x * x;
        float y = LogP0;
        y = MathF.FusedMultiplyAdd(y, x, LogP1);
        y = MathF.FusedMultiplyAdd(y, x, LogP2);
        y = MathF.FusedMultiplyAdd(y, x, LogP3);
        y = MathF.FusedMultiplyAdd(y, x, LogP4);
        y = MathF.FusedMultiplyAdd(y, x, LogP5);
        y = MathF.FusedMultiplyAdd(y, x, LogP6);
        y = MathF.FusedMultiplyAdd(y, x, LogP7);
        y = MathF.FusedMultiplyAdd(y, x, LogP8);
        y *= x;
        y = MathF.FusedMultiplyAdd(y, z, e * LogQ1);
        y -= z * 0.5f;
        x += y;
        x += e * LogQ2;
        return invalid ? float.NaN : x;
    }

    /// <summary>
    /// sin x and cos x together: j = the even integer nearest above trunc(|x|·4/π); x −= j·π/4 in three parts (Cody–Waite);
    /// the cosine polynomial 1 − z/2 + z²·C(z) and the sine polynomial x + x·z·S(z), z = x², chosen and signed by j.
    /// </summary>
    public static void SinCos(float x, out float sin, out float cos)
    {
        int signSin = BitConverter.SingleToInt32Bits(x) & SignBit;
        x = MathF.Abs(x);
        float y = x * FourOverPi;
        int j = (int)y; // truncation, as _mm256_cvttps_epi32
        j = (j + 1) & ~1;
        y = j;
        int swapSignSin = (j & 4) << 29;
        bool sinFromSinePolynomial = (j & 2) == 0;
        int signCos = (~(j - 2) & 4) << 29;

        x = MathF.FusedMultiplyAdd(y, MinusDp1, x);
        x = MathF.FusedMultiplyAdd(y, MinusDp2, x);
        x = MathF.FusedMultiplyAdd(y, MinusDp3, x);
        signSin ^= swapSignSin;

        float z = x * x;
        float c = CosP0;
        c = MathF.FusedMultiplyAdd(c, z, CosP1);
        c = MathF.FusedMultiplyAdd(c, z, CosP2);
        c *= z;
        c = MathF.FusedMultiplyAdd(c, z, -(z * 0.5f));
        c += 1f;

        float s = SinP0;
        s = MathF.FusedMultiplyAdd(s, z, SinP1);
        s = MathF.FusedMultiplyAdd(s, z, SinP2);
        s *= z;
        s = MathF.FusedMultiplyAdd(s, x, x);

        // Select as the AVX code does (masking with +0, then adding), so signs of zero come out the same.
        float sinFromS = sinFromSinePolynomial ? s : 0f;
        float sinFromC = sinFromSinePolynomial ? 0f : c;
        s -= sinFromS;
        c -= sinFromC;
        sin = BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(sinFromC + sinFromS) ^ signSin);
        cos = BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(c + s) ^ signCos);
    }
}
