using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EdgeDiffusion.Architectures;

/// <summary>
/// A minimal tokenizer in CLIP's byte-level BPE format, for models written without the real vocabulary: the 256 byte
/// symbols (GPT-2/CLIP byte-to-unicode table, in CLIP's order), their end-of-word variants, a handful of merges, then
/// <c>&lt;|startoftext|&gt;</c> and <c>&lt;|endoftext|&gt;</c> last, so end-of-text has the largest id as in CLIP (the text
/// encoder's pooled output relies on that). Every text tokenizes, mostly byte by byte.
/// </summary>
public static class TinyClipTokenizer
{
    // Each merge's halves exist before it (bytes, or an earlier merge), so the file is a valid BPE merge list.
    private static readonly string[] MergeList =
    [
        "t h", "i n", "a n", "th e</w>", "in g</w>", "an d</w>", "o n</w>", "o f</w>",
        "c a", "ca t</w>", "d o", "do g</w>", "p h", "o t", "ph ot", "phot o</w>",
    ];

    /// <summary>Entries in the vocabulary: 256 bytes + 256 end-of-word bytes + the merges + 2 special tokens.</summary>
    public static int VocabSize => 512 + MergeList.Length + 2;

    /// <summary>The merges, as merges.txt lists them after its version line.</summary>
    public static IReadOnlyList<string> Merges => MergeList;

    /// <summary>
    /// CLIP's byte-to-unicode table in vocabulary order: the printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for
    /// themselves, the other 68 bytes, in increasing order, for U+0100 onwards.
    /// </summary>
    public static IReadOnlyList<string> ByteSymbols()
    {
        var symbols = new List<string>(256);
        var printable = new bool[256];
        foreach (var (from, to) in new[] { ('!', '~'), ('¡', '¬'), ('®', 'ÿ') })
            for (int b = from; b <= to; b++)
            {
                printable[b] = true;
                symbols.Add(((char)b).ToString());
            }
        int next = 0;
        for (int b = 0; b < 256; b++)
            if (!printable[b]) symbols.Add(((char)(256 + next++)).ToString());
        return symbols;
    }

    /// <summary>The vocabulary in id order.</summary>
    public static IReadOnlyList<string> Vocabulary()
    {
        var bytes = ByteSymbols();
        var vocab = new List<string>(VocabSize);
        vocab.AddRange(bytes);
        vocab.AddRange(bytes.Select(s => s + "</w>"));
        vocab.AddRange(MergeList.Select(m => m.Replace(" ", "", StringComparison.Ordinal)));
        vocab.Add(StableDiffusionConfig.StartOfText);
        vocab.Add(StableDiffusionConfig.EndOfText);
        return vocab;
    }

    /// <summary>Writes vocab.json and merges.txt into <paramref name="folder"/>.</summary>
    public static void WriteVocabAndMerges(string folder)
    {
        Directory.CreateDirectory(folder);
        var vocab = new JsonObject();
        var tokens = Vocabulary();
        for (int id = 0; id < tokens.Count; id++) vocab[tokens[id]] = id;
        File.WriteAllText(Path.Combine(folder, "vocab.json"), vocab.ToJsonString(Json));
        File.WriteAllText(Path.Combine(folder, "merges.txt"), "#version: 0.2\n" + string.Join("\n", MergeList) + "\n");
    }

    /// <summary>Compact JSON without escaping non-ASCII or '&lt;', as transformers writes tokenizer files.</summary>
    internal static JsonSerializerOptions Json { get; } = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}
