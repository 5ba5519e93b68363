using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;

namespace EdgeDiffusion.Tests.Onnx;

public sealed class BadInputTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteExternalModel()
    {
        var values = Enumerable.Range(0, 4096).Select(i => (float)i).ToArray();
        string path = Path.Combine(_dir, "ext", "model.onnx");
        using var model = OnnxModel.FromProto(OnnxModelTests.AddModel(TensorData.Create<float>("weights", [4096], values)));
        model.Save(path, OnnxSaveOptions.External(1024));
        return path;
    }

    private static OnnxFormatException LoadFails(string path, params string[] mustMention)
    {
        var e = Assert.Throws<OnnxFormatException>(() => { using var _ = OnnxModel.Load(path); });
        foreach (var part in mustMention) Assert.Contains(part, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    [Fact]
    public void MissingFileAndFolderAreNamed()
    {
        LoadFails(Path.Combine(_dir, "nope.onnx"), "nope.onnx", "not found");
        LoadFails(_dir, "folder");
    }

    [Fact]
    public void TruncatedFileIsRejected()
    {
        var bytes = OnnxModelTests.AddModel().ToByteArray();
        string path = Path.Combine(_dir, "truncated.onnx");
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        LoadFails(path, "truncated.onnx");
        File.WriteAllBytes(path, []);
        LoadFails(path, "truncated.onnx", "no graph");
    }

    [Fact]
    public void RandomBytesAreRejected()
    {
        var random = new Random(7);
        string path = Path.Combine(_dir, "random.onnx");
        for (int i = 0; i < 50; i++)
        {
            var bytes = new byte[random.Next(1, 4096)];
            random.NextBytes(bytes);
            File.WriteAllBytes(path, bytes);
            LoadFails(path, "random.onnx");
        }
    }

    [Fact]
    public void MissingExternalDataFileIsNamedWithTheFix()
    {
        string path = WriteExternalModel();
        File.Delete(path + ".data");
        LoadFails(path, "model.onnx.data", "missing", "weights");
    }

    [Fact]
    public void OffsetOrLengthPastTheEndIsRejected()
    {
        string path = WriteExternalModel();
        string data = path + ".data";
        using (var stream = new FileStream(data, FileMode.Open)) stream.SetLength(stream.Length - 100);
        LoadFails(path, "model.onnx.data", "past the end");

        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        var weights = proto.Graph.Initializer.Single(t => t.Name == "weights");
        weights.ExternalData.Single(e => e.Key == "offset").Value = "99999999";
        File.WriteAllBytes(path, proto.ToByteArray());
        LoadFails(path, "offset 99999999", "past the end");
    }

    [Fact]
    public void ExternalLocationOutsideTheModelFolderIsRejected()
    {
        string path = WriteExternalModel();
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        proto.Graph.Initializer.Single(t => t.Name == "weights").ExternalData.Single(e => e.Key == "location").Value = "../../etc/passwd";
        File.WriteAllBytes(path, proto.ToByteArray());
        LoadFails(path, "leaves the model's folder");
    }

    [Fact]
    public void LengthThatDisagreesWithTheShapeIsRejected()
    {
        string path = WriteExternalModel();
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        proto.Graph.Initializer.Single(t => t.Name == "weights").ExternalData.Single(e => e.Key == "length").Value = "8";
        File.WriteAllBytes(path, proto.ToByteArray());
        LoadFails(path, "weights", "need 16384");
    }

    /// <summary>
    /// Seeded byte-level mutations of real models (ours with external data, and ONNX backend test models where installed):
    /// every load either succeeds or fails with OnnxFormatException; no raw protobuf, index or IO exception escapes.
    /// A load that succeeds must also survive reading every tensor and saving.
    /// </summary>
    [Fact]
    public void MutatedModelsGiveOnlyTypedErrors()
    {
        var seeds = new List<(string Name, byte[] Bytes, string? DataFile)>();
        string ext = WriteExternalModel();
        seeds.Add(("external", File.ReadAllBytes(ext), ext + ".data"));
        seeds.Add(("inline", OnnxModelTests.AddModel(TensorData.Create<float>("v", [64], new float[64])).ToByteArray(), null));
        foreach (var name in new[] { "pytorch-converted/test_Conv2d", "node/test_lstm_with_initial_bias", "node/test_if_seq" })
        {
            string file = Path.Combine(TestData.OnnxBackendTestData, name, "model.onnx");
            if (File.Exists(file)) seeds.Add((name, File.ReadAllBytes(file), null));
        }

        var random = new Random(20261123);
        int mutations = 0, loaded = 0;
        var escaped = new List<string>();
        string work = Path.Combine(_dir, "mut");
        Directory.CreateDirectory(work);
        string target = Path.Combine(work, "model.onnx");
        while (mutations < 6000)
        {
            var (name, original, dataFile) = seeds[mutations % seeds.Count];
            byte[] bytes = Mutate(original, random);
            File.WriteAllBytes(target, bytes);
            string targetData = Path.Combine(work, "model.onnx.data");
            if (dataFile is not null)
            {
                byte[] data = File.ReadAllBytes(dataFile);
                if (random.Next(4) == 0) data = data[..random.Next(data.Length)];
                File.WriteAllBytes(targetData, data);
            }
            mutations++;
            try
            {
                using var model = OnnxModel.Load(target);
                loaded++;
                foreach (var t in OnnxGraphs.AllTensors(model.Proto))
                {
                    try { if (TensorData.RawByteCount(t) is >= 0 and < 1 << 26) model.ReadRawBytes(t); }
                    catch (OnnxFormatException) { }
                }
                try { model.Save(Path.Combine(work, "out", "model.onnx"), OnnxSaveOptions.External(0)); }
                catch (OnnxFormatException) { }
            }
            catch (OnnxFormatException) { }
            catch (Exception e)
            {
                escaped.Add($"{name} mutation {mutations}: {e.GetType().Name}: {e.Message}");
            }
        }
        Assert.True(escaped.Count == 0, $"{escaped.Count} untyped errors, first: " + string.Join("\n", escaped.Take(5)));
        Assert.True(loaded > 0, "no mutation loaded: the test would not see errors after loading");
    }

    private static byte[] Mutate(byte[] original, Random random)
    {
        var bytes = original.ToList();
        int edits = random.Next(1, 4);
        for (int e = 0; e < edits && bytes.Count > 0; e++)
        {
            int at = random.Next(bytes.Count);
            switch (random.Next(5))
            {
                case 0: bytes[at] ^= (byte)(1 << random.Next(8)); break;
                case 1: bytes[at] = (byte)random.Next(256); break;
                case 2: bytes.RemoveRange(at, Math.Min(random.Next(1, 16), bytes.Count - at)); break;
                case 3: bytes.Insert(at, (byte)random.Next(256)); break;
                case 4: bytes.RemoveRange(at, bytes.Count - at); break;
            }
        }
        return bytes.ToArray();
    }
}
