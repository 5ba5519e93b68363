using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Onnx;

/// <summary>
/// Typed access to a TensorProto's values, wherever they are stored: raw_data, the typed fields
/// (float_data, int32_data, …) or an external data file. Values are always produced in the ONNX raw layout
/// (little-endian, sub-byte types packed low nibble first).
/// </summary>
public static class TensorData
{
    /// <summary>The number of elements the tensor's dims describe.</summary>
    public static long ElementCount(TensorProto tensor, string file = "")
    {
        long count = 1;
        foreach (long d in tensor.Dims)
        {
            if (d < 0) throw ExternalDataFiles.Problem(file, tensor, $"has a negative dimension ({d}); the model is corrupt");
            try { count = checked(count * d); }
            catch (OverflowException) { throw ExternalDataFiles.Problem(file, tensor, "has dimensions whose product overflows; the model is corrupt"); }
        }
        return count;
    }

    /// <summary>The number of bytes the tensor takes in raw layout; -1 for strings.</summary>
    public static long RawByteCount(TensorProto tensor, string file = "")
    {
        long elements = ElementCount(tensor, file);
        try { return DataTypes.RawByteCount(tensor.DataType, elements); }
        catch (OverflowException) { throw ExternalDataFiles.Problem(file, tensor, "is too large to address"); }
    }

    /// <summary>The C# element type that <see cref="Read{T}"/> and <see cref="Create{T}"/> map to each ONNX type.</summary>
    public static int DataTypeOf<T>() where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return (int)DT.Float;
        if (typeof(T) == typeof(Half)) return (int)DT.Float16;
        if (typeof(T) == typeof(BFloat16)) return (int)DT.Bfloat16;
        if (typeof(T) == typeof(double)) return (int)DT.Double;
        if (typeof(T) == typeof(sbyte)) return (int)DT.Int8;
        if (typeof(T) == typeof(byte)) return (int)DT.Uint8;
        if (typeof(T) == typeof(short)) return (int)DT.Int16;
        if (typeof(T) == typeof(ushort)) return (int)DT.Uint16;
        if (typeof(T) == typeof(int)) return (int)DT.Int32;
        if (typeof(T) == typeof(uint)) return (int)DT.Uint32;
        if (typeof(T) == typeof(long)) return (int)DT.Int64;
        if (typeof(T) == typeof(ulong)) return (int)DT.Uint64;
        if (typeof(T) == typeof(bool)) return (int)DT.Bool;
        throw new ArgumentException($"{typeof(T).Name} is not an ONNX element type");
    }

    /// <summary>The tensor's bytes in raw layout, read from wherever they are stored.</summary>
    public static byte[] ReadRawBytes(TensorProto tensor, ExternalDataFiles? external, string file = "")
    {
        long size = RawByteCount(tensor, file);
        if (size < 0) throw ExternalDataFiles.Problem(file, tensor, $"holds {DataTypes.Name(tensor.DataType)} values, which have no raw layout");
        if (size > Array.MaxLength) throw ExternalDataFiles.Problem(file, tensor, $"is {size} bytes, more than one array can hold; read it in parts");
        var bytes = new byte[size];
        CopyRawBytes(tensor, external, file, bytes);
        return bytes;
    }

    /// <summary>Copies the tensor's raw bytes into <paramref name="destination"/>, which must be exactly the raw size.</summary>
    public static void CopyRawBytes(TensorProto tensor, ExternalDataFiles? external, string file, Span<byte> destination)
    {
        long size = RawByteCount(tensor, file);
        if (size != destination.Length) throw new ArgumentException($"destination holds {destination.Length} bytes, tensor needs {size}");
        if (ExternalDataFiles.IsExternal(tensor))
        {
            if (external is null) throw ExternalDataFiles.Problem(file, tensor, "has external data but the model was not loaded from a file; load it with OnnxModel.Load");
            var where = external.Resolve(tensor);
            if (where.Length != size)
                throw ExternalDataFiles.Problem(where.FullPath, tensor, $"external length is {where.Length} bytes but its shape and type need {size}");
            external.Read(where, 0, destination);
            return;
        }
        if (tensor.HasRawData)
        {
            if (tensor.RawData.Length != size)
                throw ExternalDataFiles.Problem(file, tensor, $"raw_data holds {tensor.RawData.Length} bytes but its shape and type need {size}; the model is corrupt");
            tensor.RawData.Span.CopyTo(destination);
            return;
        }
        CopyTypedFields(tensor, file, destination);
    }

    /// <summary>Streams the tensor's raw bytes to <paramref name="output"/> in bounded chunks (no whole-tensor buffer for external data).</summary>
    public static void WriteRawBytesTo(TensorProto tensor, ExternalDataFiles? external, string file, Stream output)
    {
        if (ExternalDataFiles.IsExternal(tensor) && external is not null)
        {
            long size = RawByteCount(tensor, file);
            var where = external.Resolve(tensor);
            if (where.Length != size)
                throw ExternalDataFiles.Problem(where.FullPath, tensor, $"external length is {where.Length} bytes but its shape and type need {size}");
            byte[] buffer = ArrayPool<byte>.Shared.Rent(8 << 20);
            try
            {
                for (long done = 0; done < size;)
                {
                    int n = (int)Math.Min(buffer.Length, size - done);
                    external.Read(where, done, buffer.AsSpan(0, n));
                    output.Write(buffer, 0, n);
                    done += n;
                }
            }
            finally { ArrayPool<byte>.Shared.Return(buffer); }
            return;
        }
        if (tensor.HasRawData && !ExternalDataFiles.IsExternal(tensor))
        {
            long size = RawByteCount(tensor, file);
            if (tensor.RawData.Length != size)
                throw ExternalDataFiles.Problem(file, tensor, $"raw_data holds {tensor.RawData.Length} bytes but its shape and type need {size}; the model is corrupt");
            output.Write(tensor.RawData.Span);
            return;
        }
        output.Write(ReadRawBytes(tensor, external, file));
    }

    private static void CopyTypedFields(TensorProto tensor, string file, Span<byte> dst)
    {
        var type = (DT)tensor.DataType;
        long elements = ElementCount(tensor, file);
        int bits = DataTypes.BitsPerElement(tensor.DataType);
        switch (type)
        {
            case DT.Float:
            case DT.Complex64:
                Expect(tensor, file, tensor.FloatData.Count, dst.Length / 4, "float_data");
                for (int i = 0; i < tensor.FloatData.Count; i++) BinaryPrimitives.WriteSingleLittleEndian(dst[(i * 4)..], tensor.FloatData[i]);
                return;
            case DT.Double:
            case DT.Complex128:
                Expect(tensor, file, tensor.DoubleData.Count, dst.Length / 8, "double_data");
                for (int i = 0; i < tensor.DoubleData.Count; i++) BinaryPrimitives.WriteDoubleLittleEndian(dst[(i * 8)..], tensor.DoubleData[i]);
                return;
            case DT.Int64:
                Expect(tensor, file, tensor.Int64Data.Count, elements, "int64_data");
                for (int i = 0; i < tensor.Int64Data.Count; i++) BinaryPrimitives.WriteInt64LittleEndian(dst[(i * 8)..], tensor.Int64Data[i]);
                return;
            case DT.Uint64:
                Expect(tensor, file, tensor.Uint64Data.Count, elements, "uint64_data");
                for (int i = 0; i < tensor.Uint64Data.Count; i++) BinaryPrimitives.WriteUInt64LittleEndian(dst[(i * 8)..], tensor.Uint64Data[i]);
                return;
            case DT.Uint32:
                Expect(tensor, file, tensor.Uint64Data.Count, elements, "uint64_data");
                for (int i = 0; i < tensor.Uint64Data.Count; i++) BinaryPrimitives.WriteUInt32LittleEndian(dst[(i * 4)..], (uint)tensor.Uint64Data[i]);
                return;
            case DT.String:
            case DT.Undefined:
                throw ExternalDataFiles.Problem(file, tensor, $"holds {DataTypes.Name(tensor.DataType)} values, which have no raw layout");
        }
        if (bits == 0) throw ExternalDataFiles.Problem(file, tensor, $"has unknown data type {tensor.DataType}");
        // Everything else lives in int32_data: one element per entry, or one packed byte per entry for sub-byte types.
        int width = bits >= 8 ? bits / 8 : 1;
        Expect(tensor, file, tensor.Int32Data.Count, dst.Length / width, "int32_data");
        for (int i = 0; i < tensor.Int32Data.Count; i++)
        {
            int v = tensor.Int32Data[i];
            switch (width)
            {
                case 1: dst[i] = (byte)v; break;
                case 2: BinaryPrimitives.WriteUInt16LittleEndian(dst[(i * 2)..], (ushort)v); break;
                default: BinaryPrimitives.WriteInt32LittleEndian(dst[(i * 4)..], v); break;
            }
        }
    }

    private static void Expect(TensorProto tensor, string file, long actual, long expected, string field)
    {
        if (actual != expected)
            throw ExternalDataFiles.Problem(file, tensor, $"{field} holds {actual} values but its shape needs {expected}; the model is corrupt");
    }

    /// <summary>Reads the values as <typeparamref name="T"/>, which must be the tensor's own element type.</summary>
    public static T[] Read<T>(TensorProto tensor, ExternalDataFiles? external = null, string file = "") where T : unmanaged
    {
        int wanted = DataTypeOf<T>();
        if (tensor.DataType != wanted)
            throw ExternalDataFiles.Problem(file, tensor, $"is {DataTypes.Name(tensor.DataType)}, not {DataTypes.Name(wanted)}; read it with its own type or with ReadAsFloat");
        byte[] raw = ReadRawBytes(tensor, external, file);
        var values = new T[raw.Length / Marshal.SizeOf<T>()];
        raw.CopyTo(MemoryMarshal.AsBytes(values.AsSpan()));
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
        return values;
    }

    /// <summary>Reads packed int4/uint4 values unpacked to one value per element (sign-extended for int4).</summary>
    public static int[] ReadInt4(TensorProto tensor, ExternalDataFiles? external = null, string file = "")
    {
        bool signed = tensor.DataType == (int)DT.Int4;
        if (!signed && tensor.DataType != (int)DT.Uint4)
            throw ExternalDataFiles.Problem(file, tensor, $"is {DataTypes.Name(tensor.DataType)}, not int4/uint4");
        byte[] raw = ReadRawBytes(tensor, external, file);
        var values = new int[ElementCount(tensor, file)];
        SubByte.Unpack4(raw, values, signed);
        return values;
    }

    /// <summary>Reads any real numeric tensor converted to float32.</summary>
    public static float[] ReadAsFloat(TensorProto tensor, ExternalDataFiles? external = null, string file = "")
    {
        var type = (DT)tensor.DataType;
        if (type is DT.Int4 or DT.Uint4) return Array.ConvertAll(ReadInt4(tensor, external, file), v => (float)v);
        byte[] raw = ReadRawBytes(tensor, external, file);
        var n = (int)ElementCount(tensor, file);
        var result = new float[n];
        ReadOnlySpan<byte> s = raw;
        switch (type)
        {
            case DT.Float: MemoryMarshal.Cast<byte, float>(s).CopyTo(result); break;
            case DT.Double: for (int i = 0; i < n; i++) result[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(s[(i * 8)..]); break;
            case DT.Float16: for (int i = 0; i < n; i++) result[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(s[(i * 2)..]); break;
            case DT.Bfloat16: for (int i = 0; i < n; i++) result[i] = new BFloat16(BinaryPrimitives.ReadUInt16LittleEndian(s[(i * 2)..])).ToFloat(); break;
            case DT.Int8: for (int i = 0; i < n; i++) result[i] = (sbyte)s[i]; break;
            case DT.Uint8: case DT.Bool: for (int i = 0; i < n; i++) result[i] = s[i]; break;
            case DT.Int16: for (int i = 0; i < n; i++) result[i] = BinaryPrimitives.ReadInt16LittleEndian(s[(i * 2)..]); break;
            case DT.Uint16: for (int i = 0; i < n; i++) result[i] = BinaryPrimitives.ReadUInt16LittleEndian(s[(i * 2)..]); break;
            case DT.Int32: for (int i = 0; i < n; i++) result[i] = BinaryPrimitives.ReadInt32LittleEndian(s[(i * 4)..]); break;
            case DT.Uint32: for (int i = 0; i < n; i++) result[i] = BinaryPrimitives.ReadUInt32LittleEndian(s[(i * 4)..]); break;
            case DT.Int64: for (int i = 0; i < n; i++) result[i] = BinaryPrimitives.ReadInt64LittleEndian(s[(i * 8)..]); break;
            case DT.Uint64: for (int i = 0; i < n; i++) result[i] = BinaryPrimitives.ReadUInt64LittleEndian(s[(i * 8)..]); break;
            default: throw ExternalDataFiles.Problem(file, tensor, $"is {DataTypes.Name(tensor.DataType)}, which does not convert to float");
        }
        return result;
    }

    /// <summary>A new tensor holding <paramref name="values"/> in raw_data.</summary>
    public static TensorProto Create<T>(string name, ReadOnlySpan<long> dims, ReadOnlySpan<T> values) where T : unmanaged
    {
        var tensor = new TensorProto { Name = name, DataType = DataTypeOf<T>() };
        tensor.Dims.AddRange(dims.ToArray());
        Write(tensor, values);
        return tensor;
    }

    /// <summary>A new packed int4 (signed) or uint4 tensor; values must lie in [-8, 7] or [0, 15].</summary>
    public static TensorProto CreateInt4(string name, ReadOnlySpan<long> dims, ReadOnlySpan<int> values, bool signed)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)(signed ? DT.Int4 : DT.Uint4) };
        tensor.Dims.AddRange(dims.ToArray());
        if (values.Length != ElementCount(tensor)) throw new ArgumentException($"{values.Length} values for shape [{string.Join(",", tensor.Dims)}]");
        var packed = new byte[(values.Length + 1) / 2];
        SubByte.Pack4(values, packed, signed);
        tensor.RawData = ByteString.CopyFrom(packed);
        return tensor;
    }

    /// <summary>Replaces the tensor's values (same element type) with <paramref name="values"/> in raw_data.</summary>
    public static void Write<T>(TensorProto tensor, ReadOnlySpan<T> values) where T : unmanaged
    {
        int type = DataTypeOf<T>();
        if (tensor.DataType != type)
            throw new ArgumentException($"tensor '{tensor.Name}' is {DataTypes.Name(tensor.DataType)}, not {DataTypes.Name(type)}");
        if (values.Length != ElementCount(tensor))
            throw new ArgumentException($"tensor '{tensor.Name}' has {ElementCount(tensor)} elements, got {values.Length} values");
        ClearData(tensor);
        tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values));
    }

    /// <summary>Removes every place values can be stored in, so exactly one can be set next.</summary>
    public static void ClearData(TensorProto tensor)
    {
        tensor.ClearRawData();
        tensor.FloatData.Clear();
        tensor.Int32Data.Clear();
        tensor.Int64Data.Clear();
        tensor.DoubleData.Clear();
        tensor.Uint64Data.Clear();
        tensor.StringData.Clear();
        tensor.ExternalData.Clear();
        tensor.ClearDataLocation();
    }
}
