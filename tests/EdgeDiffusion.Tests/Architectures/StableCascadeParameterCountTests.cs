using EdgeDiffusion.Architectures;

namespace EdgeDiffusion.Tests.Architectures;

/// <summary>Stable Cascade lite components counted from shapes-only builds (no weights made) against the published counts.</summary>
public class StableCascadeParameterCountTests
{
    private static long Sum(IEnumerable<ParameterInfo> parameters) => parameters.Sum(p => p.Count);

    [Fact]
    public void PriorLite_Has1030785040Parameters()
    {
        Assert.Equal(1_030_785_040L, Sum(StableCascadeUNet.Parameters(StableCascadeUNetConfig.PriorLite)));
    }

    [Fact]
    public void DecoderLite_Has699471248Parameters()
    {
        Assert.Equal(699_471_248L, Sum(StableCascadeUNet.Parameters(StableCascadeUNetConfig.DecoderLite)));
    }

    [Fact]
    public void ClipVitBigG14WithProjection_Has694659840Parameters()
    {
        var parameters = ClipTextModel.Parameters(ClipTextConfig.OpenClipVitBigG14);
        Assert.Equal(694_659_840L, Sum(parameters));
        Assert.Equal([1280L, 1280], Assert.Single(parameters, p => p.Name == "text_projection.weight").Shape);
    }

    [Fact]
    public void StageADecoder_Has15706842Parameters_WithoutTheCodebook()
    {
        // 18,406,714 for the whole PaellaVQModel = this + encoder 2,667,104 + codebook 8192×4
        var parameters = PaellaVQDecoder.Parameters(PaellaVQConfig.StageA);
        Assert.Equal(15_706_842L, Sum(parameters));
        Assert.DoesNotContain(parameters, p => p.Name.StartsWith("vquantizer", StringComparison.Ordinal));
    }

    [Fact]
    public void LiteFolderCounts_AreTheComponentCounts()
    {
        var counts = StableCascadeArchitecture.ParameterCounts(StableCascadeConfig.Lite);
        Assert.Equal(694_659_840L, counts[StableCascadeArchitecture.TextEncoder]);
        Assert.Equal(1_030_785_040L, counts[StableCascadeArchitecture.Prior]);
        Assert.Equal(699_471_248L, counts[StableCascadeArchitecture.Decoder]);
        Assert.Equal(15_706_842L, counts[StableCascadeArchitecture.VaeDecoder]);
    }

    [Theory]
    [InlineData("embedding.1.weight", new long[] { 1536, 16, 1, 1 })]
    [InlineData("clip_txt_mapper.weight", new long[] { 1536, 1280 })]
    [InlineData("clip_txt_pooled_mapper.weight", new long[] { 6144, 1280 })]
    [InlineData("clip_img_mapper.weight", new long[] { 6144, 768 })]
    [InlineData("down_blocks.0.0.depthwise.weight", new long[] { 1536, 1, 3, 3 })]
    [InlineData("down_blocks.0.0.channelwise.0.weight", new long[] { 6144, 1536 })]
    [InlineData("down_blocks.0.0.channelwise.2.gamma", new long[] { 1, 1, 1, 6144 })]
    [InlineData("down_blocks.0.1.mapper_crp.weight", new long[] { 3072, 64 })]
    [InlineData("down_blocks.0.2.kv_mapper.1.weight", new long[] { 1536, 1536 })]
    [InlineData("down_blocks.0.2.attention.to_out.0.bias", new long[] { 1536 })]
    [InlineData("down_blocks.1.35.attention.to_q.weight", new long[] { 1536, 1536 })]
    [InlineData("down_downscalers.1.1.blocks.0.weight", new long[] { 1536, 1536, 1, 1 })]
    [InlineData("up_upscalers.0.1.blocks.1.weight", new long[] { 1536, 1536, 1, 1 })]
    [InlineData("up_blocks.1.0.channelwise.0.weight", new long[] { 6144, 3072 })]
    [InlineData("clf.1.weight", new long[] { 16, 1536, 1, 1 })]
    public void PriorLite_NamesAndShapesFollowDiffusers(string name, long[] shape)
    {
        var parameter = Assert.Single(StableCascadeUNet.Parameters(StableCascadeUNetConfig.PriorLite), p => p.Name == name);
        Assert.Equal(shape, parameter.Shape);
    }

    [Theory]
    [InlineData("embedding.1.weight", new long[] { 320, 16, 1, 1 })]
    [InlineData("effnet_mapper.0.weight", new long[] { 1280, 16, 1, 1 })]
    [InlineData("pixels_mapper.2.weight", new long[] { 320, 1280, 1, 1 })]
    [InlineData("down_downscalers.1.1.weight", new long[] { 576, 320, 2, 2 })]
    [InlineData("up_upscalers.2.1.weight", new long[] { 576, 320, 2, 2 })]
    [InlineData("up_repeat_mappers.3.0.weight", new long[] { 320, 320, 1, 1 })]
    [InlineData("up_blocks.3.0.channelwise.0.weight", new long[] { 1280, 640 })]
    [InlineData("down_blocks.2.2.kv_mapper.1.weight", new long[] { 1152, 1280 })]
    [InlineData("clf.1.weight", new long[] { 16, 320, 1, 1 })]
    public void DecoderLite_NamesAndShapesFollowDiffusers(string name, long[] shape)
    {
        var parameter = Assert.Single(StableCascadeUNet.Parameters(StableCascadeUNetConfig.DecoderLite), p => p.Name == name);
        Assert.Equal(shape, parameter.Shape);
    }

    [Fact]
    public void LiteStages_HaveUniqueNames_AndNoTimestepMapperForAnUnusedCondition()
    {
        var prior = StableCascadeUNet.Parameters(StableCascadeUNetConfig.PriorLite);
        var decoder = StableCascadeUNet.Parameters(StableCascadeUNetConfig.DecoderLite);
        Assert.Equal(prior.Count, prior.Select(p => p.Name).Distinct().Count());
        Assert.Equal(decoder.Count, decoder.Select(p => p.Name).Distinct().Count());
        Assert.DoesNotContain(decoder, p => p.Name.Contains("mapper_crp", StringComparison.Ordinal)); // the decoder conditions on sca only
        Assert.DoesNotContain(decoder, p => p.Name.StartsWith("down_blocks.0.", StringComparison.Ordinal) && p.Name.Contains("attention", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("up_blocks.0.0.weight", new long[] { 384, 4, 1, 1 })]
    [InlineData("up_blocks.12.gammas", new long[] { 6 })]
    [InlineData("up_blocks.12.depthwise.1.weight", new long[] { 384, 1, 3, 3 })]
    [InlineData("up_blocks.13.weight", new long[] { 384, 192, 4, 4 })]
    [InlineData("up_blocks.14.channelwise.0.weight", new long[] { 768, 192 })]
    [InlineData("out_block.0.weight", new long[] { 12, 192, 1, 1 })]
    public void StageADecoder_NamesAndShapesFollowDiffusers(string name, long[] shape)
    {
        var parameter = Assert.Single(PaellaVQDecoder.Parameters(PaellaVQConfig.StageA), p => p.Name == name);
        Assert.Equal(shape, parameter.Shape);
    }
}
