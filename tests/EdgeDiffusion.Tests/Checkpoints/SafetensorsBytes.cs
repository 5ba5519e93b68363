using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace EdgeDiffusion.Tests.Checkpoints;

/// <summary>Builds .safetensors bytes for tests: valid ones from tensors, or any header text and data for broken ones.</summary>
internal static class SafetensorsBytes
{
    public sealed record Tensor(string Name, string DType, long[] Shape, byte[] Data);

    /// <summary>A valid file: the tensors' bytes back to back in the given order, offsets from 0.</summary>
    public static byte[] Build(IEnumerable<Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = new Dictionary<string, object>();
        if (metadata is not null) header["__metadata__"] = metadata;
        var data = new MemoryStream();
        foreach (var t in tensors)
        {
            header[t.Name] = new { dtype = t.DType, shape = t.Shape, data_offsets = new[] { data.Length, data.Length + t.Data.Length } };
            data.Write(t.Data);
        }
        return Build(JsonSerializer.Serialize(header), data.ToArray());
    }

    /// <summary>The header text as given and the data after it; the length field says the header's UTF-8 length unless <paramref name="declaredHeaderLength"/> overrides it.</summary>
    public static byte[] Build(string headerJson, byte[] data, ulong? declaredHeaderLength = null) =>
        Build(Encoding.UTF8.GetBytes(headerJson), data, declaredHeaderLength);

    public static byte[] Build(byte[] header, byte[] data, ulong? declaredHeaderLength = null)
    {
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredHeaderLength ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        return bytes;
    }

    public static byte[] Float32(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }

    public static byte[] UInt16(params ushort[] values)
    {
        var bytes = new byte[values.Length * 2];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), values[i]);
        return bytes;
    }

    public static byte[] Int64(params long[] values)
    {
        var bytes = new byte[values.Length * 8];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(i * 8), values[i]);
        return bytes;
    }

    public static string Write(string dir, string fileName, byte[] bytes)
    {
        string path = Path.Combine(dir, fileName);
        File.WriteAllBytes(path, bytes);
        return path;
    }
}
