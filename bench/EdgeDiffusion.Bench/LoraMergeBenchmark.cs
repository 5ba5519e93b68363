using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using EdgeDiffusion.Lora;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Tests.Checkpoints;

namespace EdgeDiffusion.Bench;

/// <summary>
/// The time and peak RSS of merging a LoRA into a UNet at load (what <c>generate --lora</c> does before the session is
/// made), on a random kohya LoRA that covers what kohya's default network trains: every linear and 1×1 convolution
/// inside the UNet's transformer blocks (attention q/k/v/out, feed-forward, proj_in/proj_out). The LoRA is written from
/// the model's own weight names and shapes, so it fits any UNet folder (a random SD 1.5-shaped one from
/// <c>edgediff create-model --arch sd15</c>, say). Phases: read the LoRA, load the model, merge, save the merged copy.
/// </summary>
public static class LoraMergeBenchmark
{
    public static void Run(string unet, int rank, int runs, string dir)
    {
        var graph = OnnxModel.ReadGraphOutline(unet);
        var shapes = TransformerTargets(graph);
        Directory.CreateDirectory(dir);
        string lora = Path.Combine(dir, $"random-unet-rank{rank}.safetensors");
        long loraParameters = WriteRandomLora(lora, shapes, rank);
        Console.WriteLine(FormattableString.Invariant(
            $"{unet}: {shapes.Count} LoRA targets (transformer linears and 1×1 convs), rank {rank}: {loraParameters / 1e6:0.00} M LoRA parameters, {new FileInfo(lora).Length / 1048576.0:0.0} MiB"));
        var phases = new List<double[]>();
        long peak = 0;
        for (int r = 0; r <= runs; r++)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            ProcessMemory.ResetPeak();
            var watch = Stopwatch.StartNew();
            var adapter = LoraAdapter.Load(lora);
            double read = watch.Elapsed.TotalSeconds;
            using var model = OnnxModel.Load(unet);
            double load = watch.Elapsed.TotalSeconds;
            var report = LoraMerger.Merge(model, "unet", [adapter]);
            double merge = watch.Elapsed.TotalSeconds;
            string target = Path.Combine(dir, "merged", "model.onnx");
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            model.Save(target, OnnxSaveOptions.External(1 << 20));
            double save = watch.Elapsed.TotalSeconds;
            if (report.Applied != shapes.Count || report.Unmatched.Count > 0)
                throw new InvalidOperationException($"applied {report.Applied} of {shapes.Count} LoRA layers ({report.Unmatched.Count} unmatched)");
            if (r == 0) continue; // warm-up: JIT and the page cache
            phases.Add([read, load - read, merge - load, save - merge, save]);
            peak = Math.Max(peak, ProcessMemory.PeakRssBytes());
        }
        double Median(int i) => phases.Select(p => p[i]).Order().ElementAt(phases.Count / 2);
        long weights = Benchmarks.ComponentBenchmark.DiskBytes(unet);
        Console.WriteLine(FormattableString.Invariant(
            $"median of {runs}: read LoRA {Median(0):0.00} s, load UNet {Median(1):0.00} s, merge {Median(2):0.00} s, save merged copy {Median(3):0.00} s; total {Median(4):0.00} s; peak RSS {peak / 1073741824.0:0.00} GiB (model files {weights / 1073741824.0:0.00} GiB)"));
    }

    /// <summary>Kohya stem → (out, in) of every MatMul/Gemm weight and 1×1 Conv inside a transformer block ("attentions").</summary>
    private static Dictionary<string, (long Out, long In)> TransformerTargets(Onnx.Protobuf.GraphProto graph)
    {
        var byInitializer = LoraMerger.TargetsOf(graph).Where(t => t.Key.Contains("attentions", StringComparison.Ordinal))
            .ToDictionary(t => t.Value, t => t.Key, StringComparer.Ordinal);
        var dims = graph.Initializer.ToDictionary(i => i.Name, i => i.Dims.ToArray(), StringComparer.Ordinal);
        var shapes = new Dictionary<string, (long, long)>(StringComparer.Ordinal);
        foreach (var node in graph.Node)
        {
            if (node.Input.Count < 2 || !byInitializer.TryGetValue(node.Input[1], out var stem) || !dims.TryGetValue(node.Input[1], out var d)) continue;
            bool transB = node.Attribute.Any(a => a.Name == "transB" && a.I == 1);
            if (node.OpType == "Conv" && d.Length == 4 && d[2] == 1 && d[3] == 1) shapes[stem] = (d[0], d[1]);
            else if (node.OpType == "MatMul" && d.Length == 2) shapes[stem] = (d[1], d[0]);
            else if (node.OpType == "Gemm" && d.Length == 2) shapes[stem] = transB ? (d[0], d[1]) : (d[1], d[0]);
        }
        return shapes;
    }

    private static long WriteRandomLora(string path, Dictionary<string, (long Out, long In)> shapes, int rank)
    {
        var random = new Random(1);
        var tensors = new List<SafetensorsBytes.Tensor>();
        long count = 0;
        byte[] Random32(long n, double std)
        {
            var bytes = new byte[n * 4];
            for (long i = 0; i < n; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan((int)(i * 4)), (float)((random.NextDouble() * 2 - 1) * std));
            count += n;
            return bytes;
        }
        foreach (var (stem, (o, i)) in shapes.OrderBy(s => s.Key, StringComparer.Ordinal))
        {
            tensors.Add(new($"lora_unet_{stem}.lora_down.weight", "F32", [rank, i], Random32(rank * i, 1 / Math.Sqrt(i))));
            tensors.Add(new($"lora_unet_{stem}.lora_up.weight", "F32", [o, rank], Random32(o * rank, 0.01)));
            tensors.Add(new($"lora_unet_{stem}.alpha", "F32", [], SafetensorsBytes.Float32(rank / 2f)));
        }
        File.WriteAllBytes(path, SafetensorsBytes.Build(tensors, new Dictionary<string, string> { ["ss_network_module"] = "networks.lora", ["ss_network_dim"] = rank.ToString(CultureInfo.InvariantCulture) }));
        return count;
    }
}
