namespace EdgeDiffusion.Schedulers;

/// <summary>
/// The values <c>np.random.RandomState(seed).standard_normal(shape)</c> gives, converted to float32 at the end
/// (<c>.astype(np.float32)</c>): numpy computes in double and each value here is that double rounded to the nearest float.
/// <para>Algorithm (numpy's legacy RandomState: _legacy_seeding, legacy_double, legacy_gauss):</para>
/// <list type="number">
/// <item>Seeding: an integer seed in [0, 2³² − 1] seeds MT19937 by init_genrand (<see cref="Mt19937"/>); numpy rejects
/// other integers with a ValueError, and so does this constructor (<see cref="ArgumentOutOfRangeException"/>).</item>
/// <item>Uniform: a = first output &gt;&gt; 5, b = second output &gt;&gt; 6; u = (a·2²⁶ + b) / 2⁵³, a multiple of 2⁻⁵³ in [0, 1).</item>
/// <item>Normal, Marsaglia's polar method in double: x1 = 2u − 1, x2 = 2u′ − 1, r² = x1² + x2², redrawn while
/// r² ≥ 1 or r² = 0; f = √(−2·ln(r²)/r²); the value is f·x2, and f·x1 is kept for the next value.</item>
/// </list>
/// The stream does not depend on how it is split into <see cref="Fill"/> calls (the kept value carries over, as it does
/// between numpy calls on one RandomState). ln is .NET's Math.Log (the platform's libm, as numpy's); the values are
/// rounded to float, so a last-bit libm difference almost never shows. Verified bit for bit against numpy 1.24 by
/// tests/EdgeDiffusion.Tests/Schedulers/Fixtures/noise-reference.json.
/// </summary>
public sealed class NumpyNoise : INoiseSource
{
    private readonly Mt19937 _generator;
    private double _spare;
    private bool _hasSpare;

    public NumpyNoise(ulong seed)
    {
        if (seed > uint.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(seed), seed, "numpy's RandomState takes integer seeds from 0 to 2^32 - 1 (4294967295)");
        Seed = seed;
        _generator = new Mt19937((uint)seed);
    }

    public ulong Seed { get; }

    public void Fill(Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = (float)NextGauss();
    }

    /// <summary>One value of <c>standard_normal()</c> in double, before the float conversion.</summary>
    public double NextGauss()
    {
        if (_hasSpare)
        {
            _hasSpare = false;
            return _spare;
        }
        double x1, x2, r2;
        do
        {
            x1 = 2.0 * NextDouble() - 1.0;
            x2 = 2.0 * NextDouble() - 1.0;
            r2 = x1 * x1 + x2 * x2;
        }
        while (r2 >= 1.0 || r2 == 0.0);
        double f = Math.Sqrt(-2.0 * Math.Log(r2) / r2);
        _spare = f * x1;
        _hasSpare = true;
        return f * x2;
    }

    private double NextDouble()
    {
        uint a = _generator.Next() >> 5, b = _generator.Next() >> 6;
        return (a * 67108864.0 + b) / 9007199254740992.0;
    }
}
