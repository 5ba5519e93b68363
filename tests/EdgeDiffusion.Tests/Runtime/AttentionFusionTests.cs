using EdgeDiffusion.Architectures;
using EdgeDiffusion.Compression;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Runtime;
using EdgeDiffusion.Tests.Onnx;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace EdgeDiffusion.Tests.Runtime;

/// <summary>
/// Lean attention: the unmasked attentions of the trained tiny-shapes UNet (a torch.onnx export) and of our builders'
/// UNet and VAE become com.microsoft.MultiHeadAttention, and the rewritten graph computes what the unfused one does
/// (ONNX Runtime's flash-attention kernel against MatMul → Softmax → MatMul); the text encoder's masked attention stays.
/// </summary>
public sealed class AttentionFusionTests : IDisposable
{
    private readonly string _dir = TestData.NewTempDir("attention-fusion");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string TinyShapes(string component) => Path.Combine(TestData.RepoRoot, "models", "tiny-shapes", component, "model.onnx");

    private static Feed[] Feeds(OnnxModel model, int spatial, int batch)
    {
        using var inputs = CalibrationInputs.For(model.Graph, 1, spatial, seed: 7, batch: batch);
        return [.. inputs.Samples[0].Select(s =>
        {
            var info = s.Value.GetTensorTypeAndShape();
            Array values = info.ElementDataType switch
            {
                TensorElementType.Float => s.Value.GetTensorDataAsSpan<float>().ToArray(),
                TensorElementType.Int32 => s.Value.GetTensorDataAsSpan<int>().ToArray(),
                _ => s.Value.GetTensorDataAsSpan<long>().ToArray(),
            };
            return new Feed(s.Name, info.Shape, values);
        })];
    }

    /// <summary>Fuses a copy of the model, checks how many attentions went, and compares both graphs' first outputs.</summary>
    private static void AssertFusedMatches(string modelPath, int expectedFused, int spatial, int batch)
    {
        using var model = OnnxModel.Load(modelPath);
        var feeds = Feeds(model, spatial, batch);
        var unfused = OrtRunner.RunFile(modelPath, feeds).Values.First().Values;
        var proto = model.Proto.Clone();
        int softmaxBefore = proto.Graph.Node.Count(n => n.OpType == "Softmax");
        Assert.Equal(expectedFused, AttentionFusion.Fuse(proto));
        Assert.Equal(softmaxBefore - expectedFused, proto.Graph.Node.Count(n => n.OpType == "Softmax"));
        Assert.Equal(expectedFused, proto.Graph.Node.Count(n => n.OpType == "MultiHeadAttention" && n.Domain == AttentionFusion.Domain));
        string fusedPath = Path.Combine(Path.GetDirectoryName(modelPath)!, $"fused-{Guid.NewGuid():N}.onnx");
        try
        {
            File.WriteAllBytes(fusedPath, Google.Protobuf.MessageExtensions.ToByteArray(proto));
            var fused = OrtRunner.RunFile(fusedPath, feeds).Values.First().Values;
            Assert.Equal(unfused.Length, fused.Length);
            double peak = unfused.Max(Math.Abs), worst = unfused.Zip(fused, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst <= 1e-4 * Math.Max(1, peak), $"{modelPath}: max |fused − unfused| = {worst:G3} (peak {peak:G3})");
        }
        finally
        {
            File.Delete(fusedPath);
        }
    }

    [Fact]
    public void TheTrainedUNetsAttentionsFuseAndComputeTheSame() =>
        // 2 transformer blocks × (self + cross) per resolution level of tiny-shapes' export: all 14 Softmaxes are unmasked attention.
        AssertFusedMatches(TinyShapes("unet"), 14, spatial: 8, batch: 2);

    [Fact]
    public void TheTextEncodersCausalMaskIsLeftAlone()
    {
        using var model = OnnxModel.Load(TinyShapes("text_encoder"));
        var proto = model.Proto.Clone();
        Assert.Equal(0, AttentionFusion.Fuse(proto));
        Assert.DoesNotContain(proto.OpsetImport, o => o.Domain == AttentionFusion.Domain);
    }

    [Fact]
    public void OurBuildersUNetAndVaeFuse()
    {
        StableDiffusionArchitecture.WriteFolder(StableDiffusionConfig.Tiny, _dir, 0);
        using (var unet = OnnxModel.Load(Path.Combine(_dir, "unet", "model.onnx")))
        {
            int attentions = unet.Graph.Node.Count(n => n.OpType == "Softmax");
            Assert.True(attentions > 0);
            AssertFusedMatches(Path.Combine(_dir, "unet", "model.onnx"), attentions, spatial: 8, batch: 2);
        }
        // The VAE's mid-block attention: one head over the latent positions.
        AssertFusedMatches(Path.Combine(_dir, "vae_decoder", "model.onnx"), 1, spatial: 8, batch: 1);
    }
}
