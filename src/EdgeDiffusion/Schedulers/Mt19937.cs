namespace EdgeDiffusion.Schedulers;

/// <summary>
/// The 32-bit Mersenne Twister MT19937 (Matsumoto &amp; Nishimura 1998) seeded with init_genrand from a 32-bit seed:
/// state[0] = seed, state[i] = 1812433253 · (state[i−1] ⊕ (state[i−1] &gt;&gt; 30)) + i (mod 2³²). Both torch's
/// CPUGeneratorImpl (seed truncated to its low 32 bits) and numpy's legacy RandomState (integer seeds) seed it this way,
/// and both draw the standard tempered outputs (<see cref="TorchNoise"/>, <see cref="NumpyNoise"/>).
/// </summary>
internal sealed class Mt19937
{
    private const int N = 624, M = 397;
    private const uint MatrixA = 0x9908B0DF, UpperMask = 0x80000000, LowerMask = 0x7FFFFFFF;
    private readonly uint[] _state = new uint[N];
    private int _index;

    public Mt19937(uint seed)
    {
        _state[0] = seed;
        for (int i = 1; i < N; i++) _state[i] = 1812433253u * (_state[i - 1] ^ (_state[i - 1] >> 30)) + (uint)i;
        _index = N;
    }

    /// <summary>The next tempered 32-bit output.</summary>
    public uint Next()
    {
        if (_index >= N) Regenerate();
        uint y = _state[_index++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9D2C5680;
        y ^= (y << 15) & 0xEFC60000;
        y ^= y >> 18;
        return y;
    }

    private void Regenerate()
    {
        for (int i = 0; i < N; i++)
        {
            uint mixed = (_state[i] & UpperMask) | (_state[(i + 1) % N] & LowerMask);
            _state[i] = _state[(i + M) % N] ^ (mixed >> 1) ^ ((mixed & 1) != 0 ? MatrixA : 0);
        }
        _index = 0;
    }
}
