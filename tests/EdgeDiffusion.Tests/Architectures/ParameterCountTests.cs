using EdgeDiffusion.Architectures;

namespace EdgeDiffusion.Tests.Architectures;

/// <summary>Full-size configs counted from shapes-only builds (no weights are made) against the published parameter counts.</summary>
public class ParameterCountTests
{
    private static long Sum(IEnumerable<ParameterInfo> parameters) => parameters.Sum(p => p.Count);

    [Fact]
    public void Sd15UNet_Has859520964Parameters_In686Tensors()
    {
        var parameters = UNet2DConditionModel.Parameters(UNetConfig.Sd15);
        Assert.Equal(859_520_964L, Sum(parameters));
        Assert.Equal(686, parameters.Count); // tensors in SD 1.5's diffusion_pytorch_model state dict
    }

    [Fact]
    public void ClipVitL14TextModel_Has123060480Parameters()
    {
        Assert.Equal(123_060_480L, Sum(ClipTextModel.Parameters(ClipTextConfig.VitL14)));
    }

    [Fact]
    public void SdVae_EncoderPlusDecoder_Has83653863Parameters()
    {
        Assert.Equal(83_653_863L, Sum(AutoencoderKL.Parameters(VaeConfig.Sd)));
    }

    [Fact]
    public void Sd21UNet_Has865910724Parameters()
    {
        Assert.Equal(865_910_724L, Sum(UNet2DConditionModel.Parameters(UNetConfig.Sd21)));
    }

    [Fact]
    public void OpenClipVitH14TextModel_Has340387840Parameters()
    {
        Assert.Equal(340_387_840L, Sum(ClipTextModel.Parameters(ClipTextConfig.OpenClipVitH14)));
    }

    [Fact]
    public void PerComponentCounts_AddUpForSd15()
    {
        var counts = StableDiffusionArchitecture.ParameterCounts(StableDiffusionConfig.Sd15);
        Assert.Equal(123_060_480L, counts[StableDiffusionArchitecture.TextEncoder]);
        Assert.Equal(859_520_964L, counts[StableDiffusionArchitecture.UNet]);
        Assert.Equal(83_653_863L, counts[StableDiffusionArchitecture.VaeEncoder] + counts[StableDiffusionArchitecture.VaeDecoder]);
    }

    [Theory]
    [InlineData("down_blocks.0.resnets.0.conv1.weight", new long[] { 320, 320, 3, 3 })]
    [InlineData("down_blocks.1.resnets.0.conv_shortcut.weight", new long[] { 640, 320, 1, 1 })]
    [InlineData("down_blocks.0.attentions.0.proj_in.weight", new long[] { 320, 320, 1, 1 })]
    [InlineData("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", new long[] { 320, 768 })]
    [InlineData("down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", new long[] { 2560, 320 })]
    [InlineData("down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight", new long[] { 320, 1280 })]
    [InlineData("down_blocks.2.downsamplers.0.conv.weight", new long[] { 1280, 1280, 3, 3 })]
    [InlineData("mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.bias", new long[] { 1280 })]
    [InlineData("up_blocks.0.resnets.0.conv1.weight", new long[] { 1280, 2560, 3, 3 })]
    [InlineData("up_blocks.3.resnets.0.conv_shortcut.weight", new long[] { 320, 960, 1, 1 })]
    [InlineData("up_blocks.2.upsamplers.0.conv.weight", new long[] { 640, 640, 3, 3 })]
    [InlineData("time_embedding.linear_1.weight", new long[] { 1280, 320 })]
    [InlineData("conv_out.weight", new long[] { 4, 320, 3, 3 })]
    public void Sd15UNet_NamesAndShapesFollowDiffusers(string name, long[] shape)
    {
        var parameter = Assert.Single(UNet2DConditionModel.Parameters(UNetConfig.Sd15), p => p.Name == name);
        Assert.Equal(shape, parameter.Shape);
    }

    [Fact]
    public void Sd15UNet_HasNoBiasOnAttentionProjections()
    {
        var names = UNet2DConditionModel.Parameters(UNetConfig.Sd15).Select(p => p.Name).ToHashSet();
        Assert.DoesNotContain("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.bias", names);
        Assert.Equal(names.Count, UNet2DConditionModel.Parameters(UNetConfig.Sd15).Count); // names are unique
    }

    [Fact]
    public void Sd21UNet_UsesLinearProjections()
    {
        var proj = Assert.Single(UNet2DConditionModel.Parameters(UNetConfig.Sd21), p => p.Name == "down_blocks.0.attentions.0.proj_in.weight");
        Assert.Equal([320L, 320L], proj.Shape);
    }

    [Theory]
    [InlineData("text_model.embeddings.token_embedding.weight", new long[] { 49408, 768 })]
    [InlineData("text_model.embeddings.position_embedding.weight", new long[] { 77, 768 })]
    [InlineData("text_model.encoder.layers.0.self_attn.q_proj.weight", new long[] { 768, 768 })]
    [InlineData("text_model.encoder.layers.11.mlp.fc1.weight", new long[] { 3072, 768 })]
    [InlineData("text_model.final_layer_norm.bias", new long[] { 768 })]
    public void ClipVitL14_NamesAndShapesFollowTransformers(string name, long[] shape)
    {
        var parameter = Assert.Single(ClipTextModel.Parameters(ClipTextConfig.VitL14), p => p.Name == name);
        Assert.Equal(shape, parameter.Shape);
    }

    [Theory]
    [InlineData("encoder.conv_in.weight", new long[] { 128, 3, 3, 3 })]
    [InlineData("encoder.down_blocks.0.downsamplers.0.conv.weight", new long[] { 128, 128, 3, 3 })]
    [InlineData("encoder.mid_block.attentions.0.to_q.weight", new long[] { 512, 512 })]
    [InlineData("encoder.conv_out.weight", new long[] { 8, 512, 3, 3 })]
    [InlineData("quant_conv.weight", new long[] { 8, 8, 1, 1 })]
    [InlineData("post_quant_conv.weight", new long[] { 4, 4, 1, 1 })]
    [InlineData("decoder.up_blocks.2.resnets.0.conv_shortcut.weight", new long[] { 256, 512, 1, 1 })]
    [InlineData("decoder.mid_block.attentions.0.group_norm.weight", new long[] { 512 })]
    [InlineData("decoder.conv_out.weight", new long[] { 3, 128, 3, 3 })]
    public void SdVae_NamesAndShapesFollowDiffusers(string name, long[] shape)
    {
        var parameter = Assert.Single(AutoencoderKL.Parameters(VaeConfig.Sd), p => p.Name == name);
        Assert.Equal(shape, parameter.Shape);
    }
}
