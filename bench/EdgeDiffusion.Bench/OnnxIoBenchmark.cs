using System.Diagnostics;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;

namespace EdgeDiffusion.Bench;

/// <summary>
/// Load/Save throughput and peak RSS of our ONNX reader/writer on a generated multi-GB model with external data:
/// a chain of MatMuls with random [n, n] float weights, written once, then loaded, read tensor by tensor and saved again.
/// </summary>
public static class OnnxIoBenchmark
{
    public static void Run(string workDir, double gigabytes, int width)
    {
        Directory.CreateDirectory(workDir);
        string source = Path.Combine(workDir, "source", "model.onnx");
        long tensorBytes = (long)width * width * 4;
        int layers = (int)Math.Ceiling(gigabytes * (1L << 30) / tensorBytes);
        if (!File.Exists(source))
        {
            Console.WriteLine($"generating {layers} MatMul weights of [{width}, {width}] ({layers * tensorBytes / (double)(1L << 30):0.00} GiB)…");
            var sw = Stopwatch.StartNew();
            Generate(source, layers, width);
            Console.WriteLine($"generated in {sw.Elapsed.TotalSeconds:0.0} s");
        }
        long total = new FileInfo(source + ".data").Length + new FileInfo(source).Length;
        GC.Collect();
        Console.WriteLine($"model: {total / (double)(1L << 30):0.00} GiB, largest tensor {tensorBytes / (double)(1L << 20):0.0} MiB, machine {Environment.ProcessorCount} cores");

        ProcessMemory.ResetPeak();
        long before = ProcessMemory.CurrentRssBytes();
        var load = Stopwatch.StartNew();
        using var model = OnnxModel.Load(source);
        load.Stop();
        long loadPeak = ProcessMemory.PeakRssBytes();
        Console.WriteLine($"Load: {load.Elapsed.TotalMilliseconds:0.0} ms, peak RSS {Mb(loadPeak)} (before {Mb(before)}, +{Mb(loadPeak - before)})");

        ProcessMemory.ResetPeak();
        var read = Stopwatch.StartNew();
        double checksum = 0;
        foreach (var t in model.Graph.Initializer)
        {
            var bytes = model.ReadRawBytes(t);
            checksum += bytes[^1];
        }
        read.Stop();
        long readPeak = ProcessMemory.PeakRssBytes();
        Console.WriteLine($"Read every tensor: {read.Elapsed.TotalSeconds:0.00} s = {total / read.Elapsed.TotalSeconds / 1e9:0.00} GB/s, peak RSS {Mb(readPeak)} (largest tensor {Mb(tensorBytes)}) [{checksum}]");

        string copy = Path.Combine(workDir, "copy", "model.onnx");
        GC.Collect();
        ProcessMemory.ResetPeak();
        var save = Stopwatch.StartNew();
        model.Save(copy, OnnxSaveOptions.External(1024));
        save.Stop();
        long savePeak = ProcessMemory.PeakRssBytes();
        Console.WriteLine($"Save (external): {save.Elapsed.TotalSeconds:0.00} s = {total / save.Elapsed.TotalSeconds / 1e9:0.00} GB/s, peak RSS {Mb(savePeak)}");
        Console.WriteLine($"Load + Save: {(load.Elapsed + save.Elapsed).TotalSeconds:0.00} s = {total / (load.Elapsed + save.Elapsed).TotalSeconds / 1e9:0.00} GB/s");
        Directory.Delete(Path.GetDirectoryName(copy)!, recursive: true);
    }

    private static string Mb(long bytes) => $"{bytes / (double)(1L << 20):0} MiB";

    /// <summary>Writes the model tensor by tensor through a model whose initializers point into a data file we append to.</summary>
    private static void Generate(string path, int layers, int width)
    {
        string dir = Path.GetDirectoryName(path)!;
        Directory.CreateDirectory(dir);
        var graph = new GraphProto { Name = "matmul_chain" };
        graph.Input.Add(FloatInput("x", 1, width));
        string current = "x";
        var buffer = new float[(long)width * width];
        ulong state = 0x9E3779B97F4A7C15UL;
        using (var data = new FileStream(path + ".data", FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            for (int i = 0; i < layers; i++)
            {
                for (int j = 0; j < buffer.Length; j++)
                {
                    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                    buffer[j] = ((state >> 40) / (float)(1 << 24) - 0.5f) * 0.03f;
                }
                long offset = data.Position;
                data.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(buffer.AsSpan()));
                var weight = new TensorProto { Name = $"layer{i}.weight", DataType = (int)TensorProto.Types.DataType.Float, Dims = { width, width }, DataLocation = TensorProto.Types.DataLocation.External };
                weight.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "model.onnx.data" });
                weight.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                weight.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = (buffer.Length * 4L).ToString(System.Globalization.CultureInfo.InvariantCulture) });
                graph.Initializer.Add(weight);
                string output = i == layers - 1 ? "y" : $"h{i}";
                graph.Node.Add(new NodeProto { OpType = "MatMul", Name = $"layer{i}", Input = { current, weight.Name }, Output = { output } });
                current = output;
            }
        }
        graph.Output.Add(FloatInput("y", 1, width));
        var model = new ModelProto { IrVersion = 8, ProducerName = "EdgeDiffusion.Bench", Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        File.WriteAllBytes(path, model.ToByteArray());
    }

    private static ValueInfoProto FloatInput(string name, params long[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (long d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1, Shape = shape } } };
    }
}
