namespace EdgeDiffusion.Text;

/// <summary>
/// The GPT-2 / CLIP reversible byte-to-character table: printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ')
/// stand for themselves, the remaining 68 bytes take the characters U+0100 upwards in byte order.
/// BPE then works on strings of these characters, one per UTF-8 byte.
/// </summary>
internal static class ByteSymbols
{
    /// <summary>The character standing for each byte.</summary>
    public static readonly char[] ForByte = Build();

    private static char[] Build()
    {
        var table = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            table[b] = printable ? (char)b : (char)next++;
        }
        return table;
    }

    private static readonly short[] ByteOf = BuildReverse();

    private static short[] BuildReverse()
    {
        var reverse = new short[256 + 68];
        Array.Fill(reverse, (short)-1);
        for (int b = 0; b < 256; b++) reverse[ForByte[b]] = (short)b;
        return reverse;
    }

    /// <summary>The byte a table character stands for, or -1 for a character outside the table.</summary>
    public static int ToByte(char c) => c < ByteOf.Length ? ByteOf[c] : -1;
}
