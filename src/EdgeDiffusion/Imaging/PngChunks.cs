using System.Buffers.Binary;
using System.Text;

namespace EdgeDiffusion.Imaging;

/// <summary>One chunk of a PNG file: its 4-letter type and where its data lies in the file.</summary>
internal readonly record struct PngChunk(string Type, int Start, int DataStart, int DataLength)
{
    /// <summary>Length + type + data + CRC.</summary>
    public int TotalLength => DataLength + 12;
}

/// <summary>The PNG chunk layout: an 8-byte signature, then chunks of big-endian length, type, data and CRC-32 of type + data.</summary>
internal static class PngChunks
{
    public static ReadOnlySpan<byte> Signature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>
    /// Lists the chunks of a PNG file from the signature to IEND, checking every length and CRC; bytes after IEND are
    /// ignored (as decoders do). Problems are <see cref="ImageException"/>s naming <paramref name="source"/>.
    /// </summary>
    public static List<PngChunk> Parse(ReadOnlySpan<byte> png, string source)
    {
        if (png.Length < Signature.Length || !png[..Signature.Length].SequenceEqual(Signature))
            throw new ImageException(source, "is not a PNG file (it does not start with the PNG signature); only PNG files hold text chunks");
        var chunks = new List<PngChunk>();
        int position = Signature.Length;
        while (true)
        {
            if (png.Length - position < 12)
                throw new ImageException(source, $"ends at byte {png.Length}, inside a chunk header or before IEND; the file is truncated, re-save or re-download it");
            uint length = BinaryPrimitives.ReadUInt32BigEndian(png[position..]);
            var typeBytes = png.Slice(position + 4, 4);
            foreach (byte b in typeBytes)
                if (!char.IsAsciiLetter((char)b))
                    throw new ImageException(source, $"has a chunk with an invalid type at byte {position}; the file is corrupt");
            string type = Encoding.ASCII.GetString(typeBytes);
            if (length > int.MaxValue || length > png.Length - position - 12)
                throw new ImageException(source, $"chunk {type} at byte {position} claims {length} bytes, past the end of the file; the file is truncated or corrupt");
            int dataLength = (int)length;
            uint stored = BinaryPrimitives.ReadUInt32BigEndian(png[(position + 8 + dataLength)..]);
            uint computed = Crc32.Compute(png.Slice(position + 4, 4 + dataLength));
            if (stored != computed)
                throw new ImageException(source, $"chunk {type} at byte {position} has CRC 0x{stored:X8} but its bytes give 0x{computed:X8}; the file is corrupt");
            if (chunks.Count == 0 && type != "IHDR")
                throw new ImageException(source, $"starts with chunk {type} instead of IHDR; the file is corrupt");
            chunks.Add(new PngChunk(type, position, position + 8, dataLength));
            position += 12 + dataLength;
            if (type == "IEND") return chunks;
        }
    }

    /// <summary>Appends one chunk (length, type, data, CRC) to <paramref name="output"/>.</summary>
    public static void Write(Stream output, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> header = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(header, (uint)data.Length);
        Encoding.ASCII.GetBytes(type, header[4..]);
        uint crc = Crc32.Finish(Crc32.Append(Crc32.Append(Crc32.Initial, header[4..]), data));
        Span<byte> trailer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(trailer, crc);
        output.Write(header);
        output.Write(data);
        output.Write(trailer);
    }
}
