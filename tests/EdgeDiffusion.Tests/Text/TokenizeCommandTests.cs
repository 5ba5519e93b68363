using System.CommandLine;
using System.Text.Json;
using EdgeDiffusion.Cli;

namespace EdgeDiffusion.Tests.Text;

public class TokenizeCommandTests
{
    private static (int Exit, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = Program.BuildRoot().Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (exit, output.ToString(), error.ToString());
    }

    [ClipTokenizerDataFact]
    public void Json_holds_tokens_padded_ids_and_the_truncation_flag()
    {
        var (exit, output, error) = Run("tokenize", "A photo of a CAT", "--model", TestData.ClipTokenizerDir, "--json");
        Assert.Equal(0, exit);
        Assert.Equal("", error);

        using var doc = JsonDocument.Parse(output);
        Assert.Equal(new[] { "tokens", "ids", "truncated" }, doc.RootElement.EnumerateObject().Select(p => p.Name));
        int[] ids = doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(77, ids.Length);
        Assert.Equal(new[] { 49406, 320, 1125, 539, 320, 2368, 49407 }, ids[..7]);
        Assert.All(ids[7..], id => Assert.Equal(49407, id));
        Assert.Equal(new[] { "<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", "<|endoftext|>" },
            doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetString()));
        Assert.False(doc.RootElement.GetProperty("truncated").GetBoolean());
    }

    [ClipTokenizerDataFact]
    public void Long_prompt_warns_on_stderr_naming_the_first_dropped_word()
    {
        string prompt = string.Join(" ", Enumerable.Range(0, 80).Select(_ => "cat")) + " zebra";
        var (exit, output, error) = Run("tokenize", prompt, "--model", TestData.ClipTokenizerDir, "--json");
        Assert.Equal(0, exit);
        using var doc = JsonDocument.Parse(output);
        Assert.True(doc.RootElement.GetProperty("truncated").GetBoolean());
        Assert.Equal(77, doc.RootElement.GetProperty("tokens").GetArrayLength());
        Assert.StartsWith("warning:", error);
        Assert.Contains("'cat'", error);
        Assert.Contains("83 tokens", error);

        // the table says the same, with the token lines on stdout
        (exit, output, error) = Run("tokenize", prompt, "--model", TestData.ClipTokenizerDir);
        Assert.Equal(0, exit);
        Assert.Contains(" 76  49407  <|endoftext|>", output);
        Assert.Contains("truncated from 83", output);
        Assert.Contains("'cat'", error);
    }

    [ClipTokenizerDataFact]
    public void Table_lists_each_token_with_its_id_and_readable_text()
    {
        var (exit, output, error) = Run("tokenize", "naïve café", "--model", TestData.ClipTokenizerDir);
        Assert.Equal(0, exit);
        Assert.Equal("", error);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal("1   1097  na", lines[2]);
        Assert.Equal("4  15304  cafÃ©</w>  (café)", lines[5]);
        Assert.Equal("6 of 77 tokens, then 71 x pad id 49407 (<|endoftext|>)", lines[^1]);
    }

    [Fact]
    public void Without_model_the_default_model_tokenizer_is_used()
    {
        // tiny-shapes' own vocabulary has one token per caption word.
        var (exit, output, error) = Run("tokenize", "a red circle", "--json");
        Assert.True(exit == 0, error);
        using var json = System.Text.Json.JsonDocument.Parse(output);
        Assert.Equal(["<|startoftext|>", "a</w>", "red</w>", "circle</w>", "<|endoftext|>"],
            json.RootElement.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()));
    }

    [Fact]
    public void Missing_model_or_tokenizer_files_exit_2_with_one_error_line()
    {
        int exit;
        string error;
        string empty = TestData.NewTempDir("edgediff-text-cli");
        try
        {
            (exit, _, error) = Run("tokenize", "a cat", "--model", empty);
            Assert.Equal(VerbRunner.BadInput, exit);
            Assert.Equal($"error: {Path.Combine(empty, "tokenizer", "vocab.json")}: file not found; a model folder needs tokenizer/vocab.json and merges.txt (a tokenizer folder: vocab.json and merges.txt)", error.TrimEnd());
        }
        finally
        {
            Directory.Delete(empty);
        }
    }
}
