using System.Runtime.InteropServices;

namespace EdgeDiffusion.Onnx;

/// <summary>
/// Counter-based pseudo-random numbers (the SplitMix64 sequence): element i of a stream depends only on the seed and i,
/// so large buffers fill in parallel and any part of a stream can be regenerated without the rest.
/// </summary>
public static class SeededRandom
{
    private const ulong Gamma = 0x9E3779B97F4A7C15UL;

    /// <summary>The SplitMix64 output function: a bijective 64-bit mix.</summary>
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Element <paramref name="index"/> of the SplitMix64 stream started from <paramref name="seed"/>.</summary>
    public static ulong At(ulong seed, long index) => Mix(seed + unchecked((ulong)(index + 1) * Gamma));

    /// <summary>Element <paramref name="index"/> of the stream as a float uniform in [0, 1) (24 random bits).</summary>
    public static float Uniform01(ulong seed, long index) => (At(seed, index) >> 40) * (1f / (1 << 24));

    /// <summary>A stable 64-bit seed from text (FNV-1a over UTF-16 code units), e.g. from a tensor name.</summary>
    public static ulong SeedFrom(string text)
    {
        ulong h = 0xCBF29CE484222325UL;
        foreach (char c in text) h = (h ^ c) * 0x100000001B3UL;
        return h;
    }

    /// <summary>
    /// Fills <paramref name="destination"/> with values uniform in [-scale, scale): element k gets stream element
    /// <paramref name="firstIndex"/> + k, so filling a buffer in parts gives the same values as filling it at once.
    /// </summary>
    public static void FillUniform(Span<float> destination, float scale, ulong seed, long firstIndex = 0)
    {
        float a = 2f * scale / (1 << 24);
        ulong state = seed + unchecked((ulong)firstIndex * Gamma);
        for (int k = 0; k < destination.Length; k++)
        {
            state += Gamma;
            destination[k] = (Mix(state) >> 40) * a - scale;
        }
    }

    /// <summary><see cref="FillUniform(Span{float}, float, ulong, long)"/> over a whole array, in parallel chunks; same values.</summary>
    public static void FillUniform(float[] destination, float scale, ulong seed) =>
        ForChunks(destination.Length, (start, length) => FillUniform(destination.AsSpan(start, length), scale, seed, start));

    /// <summary>Fills raw little-endian float32 bytes (as an initializer's raw_data) with uniform values, in parallel chunks.</summary>
    internal static void FillUniformRaw(byte[] raw, float scale, ulong seed) =>
        ForChunks(raw.Length / 4, (start, length) =>
            FillUniform(MemoryMarshal.Cast<byte, float>(raw.AsSpan(start * 4, length * 4)), scale, seed, start));

    /// <summary>Runs <paramref name="fill"/>(start, length) over [0, count) in chunks, in parallel when there is enough work.</summary>
    internal static void ForChunks(int count, Action<int, int> fill)
    {
        const int Chunk = 1 << 18;
        int chunks = (count + Chunk - 1) / Chunk;
        if (chunks <= 1)
        {
            fill(0, count);
            return;
        }
        Parallel.For(0, chunks, c =>
        {
            int start = c * Chunk;
            fill(start, Math.Min(Chunk, count - start));
        });
    }
}
