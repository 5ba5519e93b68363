using System.Text.Json.Nodes;
using EdgeDiffusion.Tests.Onnx;
using Xunit.Abstractions;

namespace EdgeDiffusion.Tests.Conversion;

/// <summary>
/// A reference file written by a training/fixtures script: per component, "inputs" and "outputs" of an independent PyTorch
/// implementation, each {shape, values[, dtype]}. <see cref="AssertMatches"/> runs a converted model on the inputs and
/// compares every output with the reference's.
/// </summary>
internal static class PyTorchReference
{
    public const double Tolerance = 1e-4;

    public static readonly string FixtureDir = Path.Combine(TestData.RepoRoot, "tests", "EdgeDiffusion.Tests", "Conversion", "Fixtures");

    public static JsonNode Load(string file) => JsonNode.Parse(File.ReadAllText(Path.Combine(FixtureDir, file)))!;

    /// <summary>Runs <paramref name="modelPath"/> on the reference's inputs; every output must have the reference's shape and lie within <see cref="Tolerance"/>. Returns the largest error.</summary>
    public static double AssertMatches(JsonNode reference, string modelPath, ITestOutputHelper output, string label)
    {
        var feeds = reference["inputs"]!.AsObject().Select(kv => Feed(kv.Key, kv.Value!)).ToArray();
        var fetched = OrtRunner.RunFile(modelPath, feeds);
        double worst = 0;
        foreach (var (name, expected) in reference["outputs"]!.AsObject())
        {
            var shape = expected!["shape"]!.AsArray().Select(v => v!.GetValue<long>()).ToArray();
            var values = expected["values"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
            var actual = fetched[name];
            Assert.Equal(shape, actual.Shape);
            double max = values.Zip(actual.Values, (e, a) => Math.Abs(e - a)).Max();
            output.WriteLine($"{label}.{name}: max abs error {max:E2} (values up to {values.Max(Math.Abs):F3})");
            Assert.True(max <= Tolerance, $"{label}.{name}: max abs error {max:E3} > {Tolerance}");
            worst = Math.Max(worst, max);
        }
        return worst;
    }

    /// <summary>An input as its "dtype" says (int64, int32, else float32); without one, input_ids are int32 and timestep int64, as the builders declare them.</summary>
    public static Feed Feed(string name, JsonNode t)
    {
        var shape = t["shape"]!.AsArray().Select(v => v!.GetValue<long>()).ToArray();
        var values = t["values"]!.AsArray();
        string dtype = t["dtype"]?.ToString() ?? name switch { "input_ids" => "int32", "timestep" => "int64", _ => "float32" };
        Array data = dtype switch
        {
            "int32" => values.Select(v => v!.GetValue<int>()).ToArray(),
            "int64" => values.Select(v => v!.GetValue<long>()).ToArray(),
            _ => values.Select(v => (float)v!.GetValue<double>()).ToArray(),
        };
        return new Feed(name, shape, data);
    }
}
