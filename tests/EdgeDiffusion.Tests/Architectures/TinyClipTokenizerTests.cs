using System.Text.Json;
using EdgeDiffusion.Architectures;

namespace EdgeDiffusion.Tests.Architectures;

public class TinyClipTokenizerTests
{
    [Fact]
    public void ByteSymbols_FollowGpt2sTable()
    {
        var symbols = TinyClipTokenizer.ByteSymbols();
        Assert.Equal(256, symbols.Distinct().Count());
        Assert.Equal("!", symbols[0]);           // printable bytes come first, from '!'
        Assert.Equal("~", symbols[93]);
        Assert.Equal("¡", symbols[94]);
        Assert.Equal("ÿ", symbols[187]);
        Assert.Equal("Ā", symbols[188]);         // byte 0 → U+0100
        Assert.Equal("Ġ", symbols[188 + 32]);    // byte 32 (space) → U+0120, the well-known 'Ġ'
    }

    [Fact]
    public void Files_AreAValidClipVocabulary()
    {
        string dir = TestData.NewTempDir("edgediff-tinytok");
        try
        {
            TinyClipTokenizer.WriteVocabAndMerges(dir);
            var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(Path.Combine(dir, "vocab.json")))!;
            Assert.Equal(TinyClipTokenizer.VocabSize, vocab.Count);
            Assert.Equal(Enumerable.Range(0, vocab.Count), vocab.Values.Order());
            Assert.Equal(vocab.Count - 1, vocab["<|endoftext|>"]);
            Assert.Equal(vocab.Count - 2, vocab["<|startoftext|>"]);
            Assert.Equal(256, vocab["!</w>"]);
            Assert.Equal(StableDiffusionConfig.Tiny.TextEncoder.VocabSize, vocab.Count);

            var lines = File.ReadAllLines(Path.Combine(dir, "merges.txt"));
            Assert.StartsWith("#version", lines[0]);
            foreach (var merge in lines.Skip(1))
            {
                var parts = merge.Split(' ');
                Assert.Equal(2, parts.Length);
                Assert.True(vocab.ContainsKey(parts[0]) && vocab.ContainsKey(parts[1]) && vocab.ContainsKey(parts[0] + parts[1]), merge);
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
