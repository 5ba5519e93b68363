using System.Buffers.Binary;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Onnx;

public sealed class OnnxModelTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A minimal valid model: Y = X + W, with the given initializers added beside W.</summary>
    internal static ModelProto AddModel(params TensorProto[] extra)
    {
        var graph = new GraphProto { Name = "g" };
        graph.Input.Add(ValueInfo("X", 4));
        graph.Output.Add(ValueInfo("Y", 4));
        graph.Initializer.Add(TensorData.Create<float>("W", [4], [1f, 2f, 3f, 4f]));
        graph.Initializer.AddRange(extra);
        graph.Node.Add(new NodeProto { OpType = "Add", Name = "add", Input = { "X", "W" }, Output = { "Y" } });
        var model = new ModelProto { IrVersion = 8, Graph = graph, ProducerName = "test" };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        return model;
    }

    internal static ValueInfoProto ValueInfo(string name, params long[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (long d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)DT.Float, Shape = shape } } };
    }

    private string SaveLoad(ModelProto proto, OnnxSaveOptions options, out OnnxModel loaded)
    {
        string path = Path.Combine(_dir, "m", "model.onnx");
        using (var model = OnnxModel.FromProto(proto)) model.Save(path, options);
        loaded = OnnxModel.Load(path);
        return path;
    }

    [Fact]
    public void RawLayoutOfEachTypeMatchesTheSpecification()
    {
        // Expected bytes written out by hand from IEEE 754 / the ONNX raw_data rules (little-endian).
        Assert.Equal(new byte[] { 0x00, 0x00, 0xC0, 0x3F }, TensorData.ReadRawBytes(TensorData.Create<float>("f", [1], [1.5f]), null));
        Assert.Equal(new byte[] { 0x00, 0x3E }, TensorData.ReadRawBytes(TensorData.Create<Half>("h", [1], [(Half)1.5f]), null));
        Assert.Equal(new byte[] { 0x80, 0x3F }, TensorData.ReadRawBytes(TensorData.Create("b", [1], [BFloat16.FromFloat(1f)]), null));
        Assert.Equal(new byte[] { 0xFE }, TensorData.ReadRawBytes(TensorData.Create<sbyte>("i8", [1], [-2]), null));
        Assert.Equal(new byte[] { 0x01, 0x00 }, TensorData.ReadRawBytes(TensorData.Create<bool>("bool", [2], [true, false]), null));
        Assert.Equal(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF }, TensorData.ReadRawBytes(TensorData.Create<long>("i64", [1], [-1L]), null));
        // int4: first element in the low nibble; -2 is 0xE in two's complement.
        var int4 = TensorData.CreateInt4("q", [3], [1, -2, 7], signed: true);
        Assert.Equal(new byte[] { 0xE1, 0x07 }, int4.RawData.ToByteArray());
        Assert.Equal(new[] { 1, -2, 7 }, TensorData.ReadInt4(int4));
        var uint4 = TensorData.CreateInt4("u", [2], [15, 3], signed: false);
        Assert.Equal(new byte[] { 0x3F }, uint4.RawData.ToByteArray());
        Assert.Equal(new[] { 15f, 3f }, TensorData.ReadAsFloat(uint4));
        Assert.Throws<ArgumentOutOfRangeException>(() => TensorData.CreateInt4("bad", [1], [8], signed: true));
    }

    [Fact]
    public void TypedFieldsReadTheSameAsRawData()
    {
        var f16 = new TensorProto { Name = "h", DataType = (int)DT.Float16, Dims = { 2 }, Int32Data = { 0x3C00, 0xC000 } }; // 1.0, -2.0
        Assert.Equal(new[] { (Half)1f, (Half)(-2f) }, TensorData.Read<Half>(f16));
        var bf16 = new TensorProto { Name = "b", DataType = (int)DT.Bfloat16, Dims = { 1 }, Int32Data = { 0x4040 } }; // 3.0
        Assert.Equal(3f, TensorData.ReadAsFloat(bf16)[0]);
        var u8 = new TensorProto { Name = "u8", DataType = (int)DT.Uint8, Dims = { 3 }, Int32Data = { 0, 128, 255 } };
        Assert.Equal(new byte[] { 0, 128, 255 }, TensorData.Read<byte>(u8));
        var i4 = new TensorProto { Name = "i4", DataType = (int)DT.Int4, Dims = { 3 }, Int32Data = { 0xE1, 0x07 } };
        Assert.Equal(new[] { 1, -2, 7 }, TensorData.ReadInt4(i4));
        var u32 = new TensorProto { Name = "u32", DataType = (int)DT.Uint32, Dims = { 1 }, Uint64Data = { 4000000000 } };
        Assert.Equal(new uint[] { 4000000000 }, TensorData.Read<uint>(u32));
        var d = new TensorProto { Name = "d", DataType = (int)DT.Double, Dims = { 1 }, DoubleData = { 0.1 } };
        Assert.Equal(BitConverter.GetBytes(0.1), TensorData.ReadRawBytes(d, null));
        var i64 = new TensorProto { Name = "i64", DataType = (int)DT.Int64, Dims = { 2 }, Int64Data = { -5, 1L << 40 } };
        Assert.Equal(new[] { -5L, 1L << 40 }, TensorData.Read<long>(i64));
    }

    [Fact]
    public void ReadingAsTheWrongTypeIsATypedErrorNamingTheTensor()
    {
        var tensor = TensorData.Create<float>("conv.weight", [2], [1f, 2f]);
        var e = Assert.Throws<OnnxFormatException>(() => TensorData.Read<long>(tensor, null, "unet/model.onnx"));
        Assert.Contains("conv.weight", e.Message);
        Assert.Contains("unet/model.onnx", e.Message);
        Assert.Contains("float", e.Message);
        var shortData = new TensorProto { Name = "short", DataType = (int)DT.Float, Dims = { 3 }, FloatData = { 1f } };
        Assert.Throws<OnnxFormatException>(() => TensorData.ReadAsFloat(shortData));
    }

    [Fact]
    public void ExternalSaveKeepsEveryValueAndAlignsOffsets()
    {
        var big = Enumerable.Range(0, 3000).Select(i => MathF.Sin(i)).ToArray();
        var proto = AddModel(
            TensorData.Create<float>("big", [3000], big),
            TensorData.Create<Half>("half", [5000], Enumerable.Range(0, 5000).Select(i => (Half)(i * 0.25f)).ToArray()),
            TensorData.CreateInt4("nib", [4097], Enumerable.Range(0, 4097).Select(i => i % 16 - 8).ToArray(), signed: true),
            new TensorProto { Name = "typed", DataType = (int)DT.Int64, Dims = { 300 }, Int64Data = { Enumerable.Range(0, 300).Select(i => (long)i * 1000003) } });
        string path = SaveLoad(proto, OnnxSaveOptions.External(thresholdBytes: 1024), out var model);
        using (model)
        {
            var byName = model.Graph.Initializer.ToDictionary(t => t.Name);
            Assert.False(ExternalDataFiles.IsExternal(byName["W"])); // 16 bytes: under the threshold, stays inline
            foreach (string name in new[] { "big", "half", "nib", "typed" })
            {
                var t = byName[name];
                Assert.True(ExternalDataFiles.IsExternal(t), name);
                var where = model.External.Resolve(t);
                Assert.Equal("model.onnx.data", where.Location);
                Assert.Equal(0, where.Offset % 4096);
            }
            Assert.Equal(big, model.Read<float>(byName["big"]));
            Assert.Equal(Enumerable.Range(0, 4097).Select(i => i % 16 - 8), TensorData.ReadInt4(byName["nib"], model.External));
            Assert.Equal(Enumerable.Range(0, 300).Select(i => (long)i * 1000003), model.Read<long>(byName["typed"]));
            Assert.Equal(2500f * 0.25f, (float)model.Read<Half>(byName["half"])[2500]);

            // Back inline: the message equals the original one.
            string inlinePath = Path.Combine(_dir, "inline", "model.onnx");
            model.Save(inlinePath, OnnxSaveOptions.Inline);
            using var inline = OnnxModel.Load(inlinePath);
            Assert.Equal(big, inline.Read<float>(inline.Graph.Initializer.Single(t => t.Name == "big")));
            Assert.False(File.Exists(inlinePath + ".data"));
        }
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(path)!, "*.tmp-*"));
    }

    [Fact]
    public void SavingOverTheLoadedFileKeepsTheData()
    {
        var values = Enumerable.Range(0, 2048).Select(i => (float)i).ToArray();
        string path = SaveLoad(AddModel(TensorData.Create<float>("v", [2048], values)), OnnxSaveOptions.External(0), out var model);
        using (model) model.Save(path, OnnxSaveOptions.External(0));
        using var again = OnnxModel.Load(path);
        Assert.Equal(values, again.Read<float>(again.Graph.Initializer.Single(t => t.Name == "v")));
    }

    [Fact]
    public void SaveDoesNotChangeTheModelInMemory()
    {
        var proto = AddModel(TensorData.Create<float>("v", [1024], new float[1024]));
        var before = proto.Clone();
        using var model = OnnxModel.FromProto(proto);
        model.Save(Path.Combine(_dir, "x", "model.onnx"), OnnxSaveOptions.External(0));
        Assert.Equal(before, model.Proto);
    }

    [Fact]
    public void UnknownFieldsSurviveARoundTrip()
    {
        // Field 1000 of ModelProto and field 500 of NodeProto are not in the schema: a newer IR's additions look like this.
        var proto = AddModel();
        byte[] nodeBytes = proto.Graph.Node[0].ToByteArray();
        byte[] nodeWithUnknown = Concat(nodeBytes, Tag(500, 2), LengthPrefixed("future-node-field"u8.ToArray()));
        proto.Graph.Node[0] = NodeProto.Parser.ParseFrom(nodeWithUnknown);
        byte[] modelBytes = Concat(proto.ToByteArray(), Tag(1000, 2), LengthPrefixed("future-model-field"u8.ToArray()));
        string path = Path.Combine(_dir, "unknown.onnx");
        File.WriteAllBytes(path, modelBytes);

        string saved = Path.Combine(_dir, "saved.onnx");
        using (var model = OnnxModel.Load(path)) model.Save(saved);
        byte[] output = File.ReadAllBytes(saved);
        Assert.True(Contains(output, "future-model-field"u8.ToArray()));
        Assert.True(Contains(output, "future-node-field"u8.ToArray()));
        Assert.Equal(modelBytes.Length, output.Length);
    }

    private static byte[] Tag(int field, int wireType) => VarInt((ulong)((field << 3) | wireType));

    private static byte[] LengthPrefixed(byte[] payload) => Concat(VarInt((ulong)payload.Length), payload);

    private static byte[] VarInt(ulong v)
    {
        var bytes = new List<byte>();
        do { byte b = (byte)(v & 0x7F); v >>= 7; if (v != 0) b |= 0x80; bytes.Add(b); } while (v != 0);
        return bytes.ToArray();
    }

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    private static bool Contains(byte[] haystack, byte[] needle) => haystack.AsSpan().IndexOf(needle) >= 0;

    [Fact]
    public void FloatDataIsLittleEndianInRawLayout()
    {
        var t = new TensorProto { Name = "t", DataType = (int)DT.Float, Dims = { 2 }, FloatData = { 1f, -0.5f } };
        byte[] raw = TensorData.ReadRawBytes(t, null);
        Assert.Equal(1f, BinaryPrimitives.ReadSingleLittleEndian(raw));
        Assert.Equal(-0.5f, BinaryPrimitives.ReadSingleLittleEndian(raw.AsSpan(4)));
    }
}
