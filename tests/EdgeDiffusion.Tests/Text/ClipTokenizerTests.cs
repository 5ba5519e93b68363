using System.Diagnostics;
using System.Text.Json;
using EdgeDiffusion.Text;

namespace EdgeDiffusion.Tests.Text;

public class ClipTokenizerTests
{
    private static readonly Lazy<ClipTokenizer> Shared = new(() => ClipTokenizer.FromFolder(TestData.ClipTokenizerDir));

    private static List<(string Prompt, int[] Ids)> ReferenceLines()
    {
        var lines = new List<(string, int[])>();
        foreach (string line in File.ReadLines(Path.Combine(TestData.ClipTokenizerDir, "reference_ids.jsonl")))
        {
            if (line.Trim().Length == 0) continue;
            using var doc = JsonDocument.Parse(line);
            lines.Add((doc.RootElement.GetProperty("prompt").GetString()!,
                doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray()));
        }
        return lines;
    }

    [ClipTokenizerDataFact]
    public void Reproduces_every_reference_line()
    {
        var tokenizer = ClipTokenizer.FromFolder(TestData.ClipTokenizerDir);
        var lines = ReferenceLines();
        Assert.True(lines.Count >= 10, $"expected the reference file to hold at least 10 prompts, found {lines.Count}");

        var mismatches = new List<string>();
        foreach ((string prompt, int[] expected) in lines)
        {
            TokenizedPrompt encoded = tokenizer.Encode(prompt);
            int[] actual = encoded.Ids[..encoded.Length];
            if (!actual.SequenceEqual(expected))
                mismatches.Add($"prompt {JsonSerializer.Serialize(prompt)}\n  expected [{string.Join(", ", expected)}]\n  actual   [{string.Join(", ", actual)}]");
        }
        Assert.True(mismatches.Count == 0, $"{mismatches.Count} of {lines.Count} reference lines differ; first ones:\n{string.Join("\n", mismatches.Take(5))}");
    }

    [ClipTokenizerDataFact]
    public void Special_ids_come_from_the_vocabulary_and_sd1_pads_with_endoftext()
    {
        var tokenizer = Shared.Value;
        Assert.Equal(49406, tokenizer.BosId);
        Assert.Equal(49407, tokenizer.EosId);
        Assert.Equal(49407, tokenizer.PadId);
        Assert.Equal(77, tokenizer.MaxLength);
        Assert.Equal(49408, tokenizer.VocabSize);

        TokenizedPrompt encoded = tokenizer.Encode("a photo of a cat");
        Assert.Equal(77, encoded.Ids.Length);
        Assert.Equal(new[] { "<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", "<|endoftext|>" }, encoded.Tokens);
        Assert.Equal(7, encoded.Length);
        Assert.False(encoded.Truncated);
        Assert.Null(encoded.FirstDroppedWord);
        Assert.All(encoded.Ids[7..], id => Assert.Equal(49407, id));
        Assert.Equal("a photo of a cat", tokenizer.Decode(encoded.Ids[..encoded.Length]));
    }

    [ClipTokenizerDataFact]
    public void Normalises_html_white_space_and_case()
    {
        var tokenizer = Shared.Value;
        int[] plain = tokenizer.Encode("tom & jerry").Ids;
        Assert.Equal(plain, tokenizer.Encode("  TOM &amp;\n\t Jerry ").Ids);
        Assert.Equal(plain, tokenizer.Encode("Tom &amp;amp; Jerry").Ids); // CLIP unescapes twice
        Assert.NotEqual(plain, tokenizer.Encode("tom and jerry").Ids);
    }

    [ClipTokenizerDataFact]
    public void Multi_byte_text_round_trips_through_decode()
    {
        var tokenizer = Shared.Value;
        foreach (string prompt in new[] { "naïve café", "東京の夜景", "emoji 🚀 rocket" })
        {
            TokenizedPrompt encoded = tokenizer.Encode(prompt);
            Assert.Equal(prompt, tokenizer.Decode(encoded.Ids[..encoded.Length]));
        }
    }

    [ClipTokenizerDataFact]
    public void Splits_contractions_digits_and_symbol_runs_like_clip()
    {
        var tokenizer = Shared.Value;
        string[] Content(string prompt)
        {
            var tokens = tokenizer.Encode(prompt).Tokens;
            return tokens.Skip(1).Take(tokens.Count - 2).ToArray();
        }
        Assert.Equal(new[] { "it</w>", "'s</w>", "1</w>", "2</w>", "!!!</w>" }, Content("it's 12!!!"));
        // special tokens typed in the prompt are kept whole
        Assert.Equal(new[] { "a</w>", "<|endoftext|>", "b</w>" }, Content("a <|endoftext|> b"));
    }

    [ClipTokenizerDataFact]
    public void Edge_cases_match_clips_python_tokenizer()
    {
        // expected ids from OpenAI's simple_tokenizer algorithm run in Python (regex module, html.unescape, str.lower) on these files
        var tokenizer = Shared.Value;
        (string Prompt, int[] Ids)[] cases =
        [
            ("ΟΔΟΣ ΣΑΣ ΑΣ.", [49406, 138, 123, 138, 112, 138, 123, 139, 480, 139, 225, 138, 109, 139, 480, 138, 109, 139, 480, 269, 49407]),
            ("İSTANBUL at night", [49406, 328, 16384, 11231, 536, 930, 49407]),
            ("\U00010400BC \U0001D400\U0001D401\U0001D402 \U00020000\U00020001 text",
                [49406, 172, 238, 238, 101, 2162, 15889, 222, 15889, 223, 15889, 480, 172, 254, 222, 222, 172, 254, 222, 479, 4160, 49407]),
            ("!!'s a<|endoftext|>b", [49406, 1443, 262, 338, 320, 49407, 321, 49407]),
            ("\u001C a \u001C b\u001F", [49406, 320, 472, 321, 49407]),
        ];
        foreach ((string prompt, int[] expected) in cases)
        {
            TokenizedPrompt encoded = tokenizer.Encode(prompt);
            Assert.Equal(expected, encoded.Ids[..encoded.Length]);
        }
    }

    [ClipTokenizerDataFact]
    public void Long_prompt_is_cut_to_bos_75_tokens_eos_and_names_the_first_dropped_word()
    {
        var tokenizer = Shared.Value;
        // "word0 word1 ..." : each "wordN" is letters + digits; count tokens to find where the cut falls
        string prompt = string.Join(" ", Enumerable.Range(0, 40).Select(i => $"cat{i}"));
        TokenizedPrompt encoded = tokenizer.Encode(prompt);

        Assert.True(encoded.Truncated);
        Assert.Equal(77, encoded.Length);
        Assert.Equal(77, encoded.Ids.Length);
        Assert.Equal(tokenizer.BosId, encoded.Ids[0]);
        Assert.Equal(tokenizer.EosId, encoded.Ids[76]);
        Assert.Equal("<|endoftext|>", encoded.Tokens[^1]);

        // cat0..cat9 take 2 tokens each (20), cat10.. take 3 (cat, 1, 0): 20 + 3*18 = 74, so cat28 keeps "cat" and loses its digits
        Assert.Equal("cat28", encoded.FirstDroppedWord);
        Assert.Equal(2 + 20 + 3 * 30, encoded.UntruncatedLength);
        Assert.Equal("cat</w>", encoded.Tokens[75]);

        TokenizedPrompt fits = tokenizer.Encode(string.Join(" ", Enumerable.Range(0, 75).Select(_ => "cat")));
        Assert.False(fits.Truncated);
        Assert.Equal(77, fits.Length);
        Assert.Null(fits.FirstDroppedWord);
        Assert.True(tokenizer.Encode(string.Join(" ", Enumerable.Range(0, 76).Select(_ => "cat")) + " dog").Truncated);
        Assert.Equal("dog", tokenizer.Encode(string.Join(" ", Enumerable.Range(0, 75).Select(_ => "cat")) + " Dog house").FirstDroppedWord);
    }

    [ClipTokenizerDataFact]
    public void Sd2_style_config_pads_with_exclamation_mark()
    {
        string dir = CopyTokenizer();
        try
        {
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
                """{"pad_token": "!", "model_max_length": 77, "bos_token": {"content": "<|startoftext|>", "__type": "AddedToken"}}""");
            var tokenizer = ClipTokenizer.FromFolder(dir);
            Assert.Equal(0, tokenizer.PadId);
            Assert.Equal("!", tokenizer.Token(0));
            TokenizedPrompt encoded = tokenizer.Encode("a photo of a cat");
            Assert.Equal(49407, encoded.Ids[6]);
            Assert.All(encoded.Ids[7..], id => Assert.Equal(0, id));

            // special_tokens_map.json overrides tokenizer_config.json, and an AddedToken object is read by its content
            File.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), """{"pad_token": {"content": "<|endoftext|>", "lstrip": false}}""");
            Assert.Equal(49407, ClipTokenizer.FromFolder(dir).PadId);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [ClipTokenizerDataFact]
    public void Model_folder_with_tokenizer_subfolder_and_config_max_length()
    {
        string model = TestData.NewTempDir("edgediff-text-model");
        try
        {
            string dir = Path.Combine(model, "tokenizer");
            Directory.CreateDirectory(dir);
            File.Copy(Path.Combine(TestData.ClipTokenizerDir, "vocab.json"), Path.Combine(dir, "vocab.json"));
            File.Copy(Path.Combine(TestData.ClipTokenizerDir, "merges.txt"), Path.Combine(dir, "merges.txt"));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"model_max_length": 8}""");
            var tokenizer = ClipTokenizer.FromFolder(model);
            Assert.Equal(8, tokenizer.MaxLength);
            TokenizedPrompt encoded = tokenizer.Encode("an astronaut riding a horse on mars");
            Assert.Equal(new[] { 49406, 550, 18376, 6765, 320, 4558, 525, 49407 }, encoded.Ids);
            Assert.Equal("mars", encoded.FirstDroppedWord);

            // transformers' "no limit" (1e30) is not a usable length: 77 it is
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"model_max_length": 1e30}""");
            Assert.Equal(77, ClipTokenizer.FromFolder(model).MaxLength);
        }
        finally
        {
            Directory.Delete(model, recursive: true);
        }
    }

    [ClipTokenizerDataFact]
    public void Missing_vocab_or_merges_name_the_file_and_the_fix()
    {
        string model = TestData.NewTempDir("edgediff-text-missing");
        try
        {
            var e = Assert.Throws<TokenizerException>(() => ClipTokenizer.FromFolder(model));
            Assert.Equal(Path.Combine(model, "tokenizer", "vocab.json"), e.File);
            Assert.Contains("file not found", e.Message);
            Assert.Contains("tokenizer/vocab.json and merges.txt", e.Message);

            File.Copy(Path.Combine(TestData.ClipTokenizerDir, "vocab.json"), Path.Combine(model, "vocab.json"));
            e = Assert.Throws<TokenizerException>(() => ClipTokenizer.FromFolder(model));
            Assert.Equal(Path.Combine(model, "merges.txt"), e.File);
            Assert.StartsWith(Path.Combine(model, "merges.txt") + ": file not found", e.Message);

            e = Assert.Throws<TokenizerException>(() => ClipTokenizer.Load(Path.Combine(model, "nope.json"), Path.Combine(model, "merges.txt")));
            Assert.Equal(Path.Combine(model, "nope.json"), e.File);
            Assert.IsAssignableFrom<EdgeDiffusionException>(e);
        }
        finally
        {
            Directory.Delete(model, recursive: true);
        }
    }

    [ClipTokenizerDataFact]
    public void Corrupt_vocab_merges_or_config_are_reported_with_the_file()
    {
        string dir = CopyTokenizer();
        try
        {
            string vocab = Path.Combine(dir, "vocab.json");
            string merges = Path.Combine(dir, "merges.txt");
            string good = File.ReadAllText(vocab);

            File.WriteAllText(vocab, good[..(good.Length / 2)]);
            var e = Assert.Throws<TokenizerException>(() => ClipTokenizer.FromFolder(dir));
            Assert.Equal(vocab, e.File);
            Assert.Contains("not a JSON object", e.Message);
            Assert.DoesNotContain("\n", e.Message);

            File.WriteAllText(vocab, """{"a": 0, "b": 1}""");
            e = Assert.Throws<TokenizerException>(() => ClipTokenizer.FromFolder(dir));
            Assert.Equal(vocab, e.File);
            Assert.Contains("<|startoftext|>", e.Message);

            File.WriteAllText(vocab, good);
            File.AppendAllText(merges, "zzq qqz\n");
            e = Assert.Throws<TokenizerException>(() => ClipTokenizer.FromFolder(dir));
            Assert.Equal(merges, e.File);
            Assert.Contains("'zzq qqz'", e.Message);

            File.Copy(Path.Combine(TestData.ClipTokenizerDir, "merges.txt"), merges, overwrite: true);
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"pad_token": "<pad>"}""");
            e = Assert.Throws<TokenizerException>(() => ClipTokenizer.FromFolder(dir));
            Assert.Equal(Path.Combine(dir, "tokenizer_config.json"), e.File);
            Assert.Contains("'<pad>'", e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static string CopyTokenizer()
    {
        string dir = TestData.NewTempDir("edgediff-text-tok");
        File.Copy(Path.Combine(TestData.ClipTokenizerDir, "vocab.json"), Path.Combine(dir, "vocab.json"));
        File.Copy(Path.Combine(TestData.ClipTokenizerDir, "merges.txt"), Path.Combine(dir, "merges.txt"));
        return dir;
    }
}
