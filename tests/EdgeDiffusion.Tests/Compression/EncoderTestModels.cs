using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using EdgeDiffusion.Tests.Onnx;
using Microsoft.ML.OnnxRuntime;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Compression;

/// <summary>Small Conv / MatMul models whose weight is replaced by an encoder's nodes, run through ONNX Runtime.</summary>
internal static class EncoderTestModels
{
    public static readonly long[] ConvShape = [8, 6, 3, 3];
    public static readonly long[] MatMulShape = [24, 10];

    public static WeightUse ConvUse(long[]? shape = null) => new("w", shape ?? ConvShape, [new WeightConsumer("conv", "Conv", 1)]);
    public static WeightUse MatMulUse(long[]? shape = null) => new("w", shape ?? MatMulShape, [new WeightConsumer("mm", "MatMul", 1)]);

    /// <summary>Gaussian weights (Box–Muller on System.Random), scaled per output channel so channels differ in range.</summary>
    public static float[] Gaussian(int count, int seed, float scale = 1f)
    {
        var rng = new Random(seed);
        var w = new float[count];
        for (int i = 0; i < count; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            w[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return w;
    }

    /// <summary>The outputs of the model whose weight <c>w</c> is <paramref name="weights"/> as an initializer: "w" and "y".</summary>
    public static (Fetched W, Fetched Y) RunPlain(WeightUse use, float[] weights) => Run(use, weights, null);

    /// <summary>The same model with <c>w</c> computed by the encoded nodes, at the opset the encoding asks (at least 17).</summary>
    public static (Fetched W, Fetched Y, EncodedWeight Encoded) RunEncoded(WeightUse use, float[] weights, IWeightEncoder encoder)
    {
        EncodedWeight? encoded = null;
        var (w, y) = Run(use, weights, (model, editor) =>
        {
            encoded = encoder.Encode(use, weights, editor.UniqueName);
            editor.ReplaceInitializer(use.Name, encoded.Nodes, encoded.Initializers);
            SetOpset(model, encoded.MinimumOpset);
        });
        return (w, y, encoded!);
    }

    /// <summary>Raises the default-domain opset (and IR version) of <paramref name="model"/> to at least <paramref name="opset"/>.</summary>
    public static void SetOpset(ModelProto model, int opset)
    {
        var import = model.OpsetImport.Single(o => o.Domain.Length == 0);
        if (import.Version >= opset) return;
        import.Version = opset;
        model.IrVersion = GraphBuilder.IrVersionFor(opset);
    }

    static (Fetched W, Fetched Y) Run(WeightUse use, float[] weights, Action<ModelProto, GraphEditor>? replace)
    {
        var b = new GraphBuilder(17);
        var shape = use.Shape.ToArray();
        b.Initializer<float>(use.Name, shape, weights);
        Feed x;
        string y;
        if (use.OpType == "Conv")
        {
            long[] xs = [1, shape[1], 5, 5];
            b.Input("x", DT.Float, [.. xs.Select(d => (Dim)d)]);
            y = b.Conv("x", use.Name, pads: [1, 1, 1, 1], output: "y");
            x = new Feed("x", xs, OrtRunner.RandomFloats((int)xs.Aggregate(1L, (a, d) => a * d), 5));
        }
        else
        {
            long[] xs = [3, shape[0]];
            b.Input("x", DT.Float, [.. xs.Select(d => (Dim)d)]);
            y = b.MatMul("x", use.Name, "y");
            x = new Feed("x", xs, OrtRunner.RandomFloats((int)xs.Aggregate(1L, (a, d) => a * d), 5));
        }
        b.Output(y, DT.Float);
        b.Output(use.Name, DT.Float);
        var model = b.Build();
        replace?.Invoke(model, new GraphEditor(model.Graph));
        var outputs = OrtRunner.Run(model, GraphOptimizationLevel.ORT_DISABLE_ALL, x);
        return (outputs[use.Name], outputs["y"]);
    }

    /// <summary>Runs the nodes <paramref name="emit"/> adds (which must output "out" of <paramref name="type"/>) in an otherwise empty model.</summary>
    public static Fetched RunNodes(int opset, DT type, long[] outputShape, Action<NodeEmitter> emit)
    {
        var b = new GraphBuilder(17);
        b.InitializerRaw("out", type, outputShape, new byte[outputShape.Aggregate(1L, (a, d) => a * d) * (type == DT.Uint8 ? 1 : 4)]);
        b.Output("out", type);
        var model = b.Build();
        var editor = new GraphEditor(model.Graph);
        var e = new NodeEmitter("out", editor.UniqueName);
        emit(e);
        editor.ReplaceInitializer("out", e.Nodes, e.Initializers);
        SetOpset(model, opset);
        return OrtRunner.Run(model, GraphOptimizationLevel.ORT_DISABLE_ALL)["out"];
    }
}
