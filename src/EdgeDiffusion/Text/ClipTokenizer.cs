using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;

namespace EdgeDiffusion.Text;

/// <summary>
/// The CLIP byte-level BPE tokenizer of Stable Diffusion's text encoders, built from a tokenizer folder's
/// <c>vocab.json</c> and <c>merges.txt</c> (and, when present, <c>tokenizer_config.json</c> / <c>special_tokens_map.json</c>
/// for the pad token and maximum length). Thread-safe; BPE results are cached per word.
/// </summary>
public sealed class ClipTokenizer
{
    /// <summary>CLIP's context length, used when no config gives a sane <c>model_max_length</c>.</summary>
    public const int DefaultMaxLength = 77;

    private const string EndOfWord = "</w>";
    private const int CacheLimit = 100_000;

    private readonly Dictionary<string, int> _vocab;
    private readonly string?[] _tokenOf; // id -> vocabulary string (null where the vocabulary has no such id)
    private readonly Dictionary<long, (int Rank, int Merged)> _merges; // (left id, right id) -> rank, merged id
    private readonly int[] _byteId = new int[256];
    private readonly int[] _byteEndId = new int[256];
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    private ClipTokenizer(Dictionary<string, int> vocab, string?[] tokenOf, Dictionary<long, (int, int)> merges, int padId, int maxLength)
    {
        _vocab = vocab;
        _tokenOf = tokenOf;
        _merges = merges;
        BosId = vocab[ClipText.StartOfText];
        EosId = vocab[ClipText.EndOfText];
        PadId = padId;
        MaxLength = maxLength;
        for (int b = 0; b < 256; b++)
        {
            string symbol = ByteSymbols.ForByte[b].ToString();
            _byteId[b] = vocab[symbol];
            _byteEndId[b] = vocab[symbol + EndOfWord];
        }
    }

    /// <summary>Id of <c>&lt;|startoftext|&gt;</c> (49406 in CLIP's vocabulary).</summary>
    public int BosId { get; }

    /// <summary>Id of <c>&lt;|endoftext|&gt;</c> (49407 in CLIP's vocabulary).</summary>
    public int EosId { get; }

    /// <summary>Id that fills <see cref="TokenizedPrompt.Ids"/> after EOS: <c>&lt;|endoftext|&gt;</c> for SD 1.x, <c>!</c> (0) for SD 2.x.</summary>
    public int PadId { get; }

    /// <summary>Tokens per prompt, BOS and EOS included (77 for CLIP).</summary>
    public int MaxLength { get; }

    /// <summary>Number of entries in vocab.json.</summary>
    public int VocabSize => _vocab.Count;

    /// <summary>
    /// Loads the tokenizer of <paramref name="dir"/>: either a tokenizer folder (holding vocab.json and merges.txt)
    /// or a model folder with a <c>tokenizer/</c> subfolder. Pad token and maximum length come from the folder's
    /// special_tokens_map.json or tokenizer_config.json when they say (the former wins, as in transformers).
    /// </summary>
    public static ClipTokenizer FromFolder(string dir)
    {
        ArgumentNullException.ThrowIfNull(dir);
        if (!Directory.Exists(dir))
            throw new TokenizerException(dir, "folder not found; pass a model folder (with tokenizer/vocab.json and merges.txt) or a tokenizer folder");
        // a folder without vocab.json and merges.txt of its own is taken for a model folder
        bool isTokenizerDir = File.Exists(Path.Combine(dir, "vocab.json")) || File.Exists(Path.Combine(dir, "merges.txt"));
        string tokenizerDir = isTokenizerDir ? dir : Path.Combine(dir, "tokenizer");

        string vocabPath = Path.Combine(tokenizerDir, "vocab.json");
        string mergesPath = Path.Combine(tokenizerDir, "merges.txt");
        const string need = "a model folder needs tokenizer/vocab.json and merges.txt (a tokenizer folder: vocab.json and merges.txt)";
        if (!File.Exists(vocabPath)) throw new TokenizerException(vocabPath, $"file not found; {need}");
        if (!File.Exists(mergesPath)) throw new TokenizerException(mergesPath, $"file not found; {need}");

        (string? padToken, string? padSource, int? maxLength) = ReadConfigs(tokenizerDir);
        var vocab = ReadVocab(vocabPath);
        if (padToken is not null && !vocab.ContainsKey(padToken))
            throw new TokenizerException(padSource!, $"pad_token '{padToken}' is not in {vocabPath}; fix pad_token or use the vocab.json that belongs with it");
        return Build(vocabPath, vocab, mergesPath, padToken, maxLength ?? DefaultMaxLength);
    }

    /// <summary>Loads a tokenizer from explicit files; <paramref name="padToken"/> defaults to <c>&lt;|endoftext|&gt;</c>.</summary>
    public static ClipTokenizer Load(string vocabPath, string mergesPath, string? padToken = null, int maxLength = DefaultMaxLength)
    {
        ArgumentNullException.ThrowIfNull(vocabPath);
        ArgumentNullException.ThrowIfNull(mergesPath);
        if (maxLength < 3) throw new InvalidArgumentException(nameof(maxLength), $"{maxLength} leaves no room for a token between BOS and EOS; use at least 3 (CLIP uses 77)");
        if (!File.Exists(vocabPath)) throw new TokenizerException(vocabPath, "file not found; pass the vocab.json of the model's tokenizer folder");
        if (!File.Exists(mergesPath)) throw new TokenizerException(mergesPath, "file not found; pass the merges.txt of the model's tokenizer folder");
        var vocab = ReadVocab(vocabPath);
        if (padToken is not null && !vocab.ContainsKey(padToken))
            throw new InvalidArgumentException(nameof(padToken), $"'{padToken}' is not in {vocabPath}; use a token of that vocabulary ('<|endoftext|>' or '!')");
        return Build(vocabPath, vocab, mergesPath, padToken, maxLength);
    }

    /// <summary>
    /// Normalises and tokenizes <paramref name="prompt"/>: BOS, at most <see cref="MaxLength"/> − 2 content tokens, EOS,
    /// then pad ids up to <see cref="MaxLength"/>.
    /// </summary>
    public TokenizedPrompt Encode(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        string text = ClipText.Normalize(prompt);
        int room = MaxLength - 2;
        var ids = new List<int>(MaxLength) { BosId };
        int content = 0;
        int droppedAt = -1;
        foreach (ClipText.Piece piece in ClipText.Split(text))
        {
            int[] pieceIds = Bpe(text.Substring(piece.Start, piece.Length));
            foreach (int id in pieceIds)
            {
                if (content < room) ids.Add(id);
                else if (droppedAt < 0) droppedAt = piece.Start;
                content++;
            }
        }
        ids.Add(EosId);

        var tokens = new string[ids.Count];
        for (int i = 0; i < tokens.Length; i++) tokens[i] = _tokenOf[ids[i]]!;
        int[] padded = new int[MaxLength];
        ids.CopyTo(padded);
        Array.Fill(padded, PadId, ids.Count, MaxLength - ids.Count);
        return new TokenizedPrompt(padded, tokens, content + 2, droppedAt < 0 ? null : WordAt(text, droppedAt));
    }

    /// <summary>The vocabulary string of <paramref name="id"/> (e.g. <c>cat&lt;/w&gt;</c>).</summary>
    public string Token(int id) =>
        id >= 0 && id < _tokenOf.Length && _tokenOf[id] is { } token ? token
            : throw new InvalidArgumentException(nameof(id), $"{id} is not a token id of this vocabulary (0..{_tokenOf.Length - 1})");

    /// <summary>
    /// Text of token ids: bytes reassembled, <c>&lt;/w&gt;</c> read as a space, invalid UTF-8 as U+FFFD.
    /// BOS and EOS are left out unless <paramref name="skipSpecial"/> is false (a pad id that is an ordinary token, like SD 2.x's '!', is not).
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecial = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        var text = new StringBuilder();
        foreach (int id in ids)
        {
            if (skipSpecial && (id == BosId || id == EosId)) continue;
            string token = Token(id);
            if (id == BosId || id == EosId)
            {
                Flush();
                text.Append(token);
                continue;
            }
            bool endOfWord = token.EndsWith(EndOfWord, StringComparison.Ordinal);
            foreach (char c in endOfWord ? token.AsSpan(0, token.Length - EndOfWord.Length) : token.AsSpan())
            {
                int b = ByteSymbols.ToByte(c);
                if (b >= 0) bytes.Add((byte)b);
            }
            if (endOfWord) bytes.Add((byte)' ');
        }
        Flush();
        return text.ToString().TrimEnd(' ');

        void Flush()
        {
            text.Append(Encoding.UTF8.GetString(bytes.ToArray()));
            bytes.Clear();
        }
    }

    private int[] Bpe(string word)
    {
        if (_cache.TryGetValue(word, out int[]? cached)) return cached;
        int[] ids = word is ClipText.StartOfText or ClipText.EndOfText ? [_vocab[word]] : Merge(word);
        if (_cache.Count >= CacheLimit) _cache.Clear();
        _cache[word] = ids;
        return ids;
    }

    private int[] Merge(string word)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(word);
        var symbols = new List<int>(utf8.Length);
        for (int i = 0; i < utf8.Length; i++)
            symbols.Add(i == utf8.Length - 1 ? _byteEndId[utf8[i]] : _byteId[utf8[i]]);

        var next = new List<int>(symbols.Count);
        while (symbols.Count > 1)
        {
            int bestRank = int.MaxValue, left = 0, right = 0, merged = 0;
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                if (_merges.TryGetValue(PairKey(symbols[i], symbols[i + 1]), out var m) && m.Rank < bestRank)
                    (bestRank, left, right, merged) = (m.Rank, symbols[i], symbols[i + 1], m.Merged);
            }
            if (bestRank == int.MaxValue) break;

            next.Clear();
            for (int i = 0; i < symbols.Count; i++)
            {
                if (i + 1 < symbols.Count && symbols[i] == left && symbols[i + 1] == right)
                {
                    next.Add(merged);
                    i++;
                }
                else next.Add(symbols[i]);
            }
            (symbols, next) = (next, symbols);
        }
        return symbols.ToArray();
    }

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    // The white-space separated word of the normalised text around index.
    private static string WordAt(string text, int index)
    {
        int start = text.LastIndexOf(' ', index) + 1;
        int end = text.IndexOf(' ', index);
        return text[start..(end < 0 ? text.Length : end)];
    }

    private static ClipTokenizer Build(string vocabPath, Dictionary<string, int> vocab, string mergesPath, string? padToken, int maxLength)
    {
        foreach (string special in new[] { ClipText.StartOfText, ClipText.EndOfText })
            if (!vocab.ContainsKey(special))
                throw new TokenizerException(vocabPath, $"has no '{special}' token; this is not a CLIP vocabulary, use the vocab.json of the model's tokenizer folder");
        for (int b = 0; b < 256; b++)
        {
            string symbol = ByteSymbols.ForByte[b].ToString();
            if (!vocab.ContainsKey(symbol) || !vocab.ContainsKey(symbol + EndOfWord))
                throw new TokenizerException(vocabPath, $"lacks the byte token '{symbol}' or '{symbol}{EndOfWord}'; this is not a CLIP byte-level BPE vocabulary, use the vocab.json of the model's tokenizer folder");
        }

        int maxId = 0;
        foreach (int id in vocab.Values) maxId = Math.Max(maxId, id);
        var tokenOf = new string?[maxId + 1];
        foreach ((string token, int id) in vocab) tokenOf[id] = token;

        var merges = ReadMerges(mergesPath, vocabPath, vocab);
        int padId = vocab[padToken ?? ClipText.EndOfText];
        return new ClipTokenizer(vocab, tokenOf, merges, padId, maxLength);
    }

    private static Dictionary<string, int> ReadVocab(string path)
    {
        Dictionary<string, int>? vocab;
        try
        {
            using var stream = File.OpenRead(path);
            vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(stream);
        }
        catch (JsonException e)
        {
            throw new TokenizerException(path, $"not a JSON object of token → id ({FirstLine(e.Message)}); replace it with the model's original tokenizer/vocab.json", e);
        }
        catch (IOException e)
        {
            throw new TokenizerException(path, $"cannot be read ({e.Message}); check the file and its permissions", e);
        }
        if (vocab is null || vocab.Count == 0)
            throw new TokenizerException(path, "holds no tokens; replace it with the model's original tokenizer/vocab.json");
        foreach ((string token, int id) in vocab)
            if (id < 0 || id > 10_000_000)
                throw new TokenizerException(path, $"token '{token}' has id {id}, outside 0..10000000; replace it with the model's original tokenizer/vocab.json");
        return vocab;
    }

    private static Dictionary<long, (int, int)> ReadMerges(string path, string vocabPath, Dictionary<string, int> vocab)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (IOException e)
        {
            throw new TokenizerException(path, $"cannot be read ({e.Message}); check the file and its permissions", e);
        }
        var merges = new Dictionary<long, (int, int)>(lines.Length);
        int rank = 0;
        for (int n = 0; n < lines.Length; n++)
        {
            string line = lines[n];
            if ((n == 0 && line.StartsWith("#version", StringComparison.Ordinal)) || line.Length == 0) continue;
            string[] parts = line.Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                throw new TokenizerException(path, $"line {n + 1} is not a merge 'left right' ({Quote(line)}); replace it with the model's original tokenizer/merges.txt");
            if (!vocab.TryGetValue(parts[0], out int left) || !vocab.TryGetValue(parts[1], out int right) || !vocab.TryGetValue(parts[0] + parts[1], out int merged))
                throw new TokenizerException(path, $"line {n + 1} merges {Quote(line)} but {vocabPath} lacks its parts or result; vocab.json and merges.txt must come from the same tokenizer");
            merges[PairKey(left, right)] = (rank++, merged); // a repeated pair keeps its last rank, as Python's dict(zip(merges, range)) does
        }
        if (merges.Count == 0)
            throw new TokenizerException(path, "holds no merges; replace it with the model's original tokenizer/merges.txt");
        return merges;
    }

    private static (string? PadToken, string? PadSource, int? MaxLength) ReadConfigs(string dir)
    {
        string? padToken = null, padSource = null;
        int? maxLength = null;
        // tokenizer_config.json first, then special_tokens_map.json overriding its pad token (transformers' order)
        foreach (string name in new[] { "tokenizer_config.json", "special_tokens_map.json" })
        {
            string path = Path.Combine(dir, name);
            if (!File.Exists(path)) continue;
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(File.ReadAllBytes(path));
            }
            catch (JsonException e)
            {
                throw new TokenizerException(path, $"not valid JSON ({FirstLine(e.Message)}); fix it or delete it (then the pad token is <|endoftext|> and the length 77)", e);
            }
            using (doc)
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                    throw new TokenizerException(path, "is not a JSON object; fix it or delete it (then the pad token is <|endoftext|> and the length 77)");
                if (doc.RootElement.TryGetProperty("pad_token", out JsonElement pad))
                {
                    string? token = pad.ValueKind switch
                    {
                        JsonValueKind.String => pad.GetString(),
                        JsonValueKind.Object when pad.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String => c.GetString(),
                        _ => null,
                    };
                    if (token is not null) (padToken, padSource) = (token, path);
                }
                if (doc.RootElement.TryGetProperty("model_max_length", out JsonElement max)
                    && max.ValueKind == JsonValueKind.Number && max.TryGetDouble(out double value)
                    && value >= 3 && value <= 4096 && value == Math.Floor(value))
                    maxLength = (int)value; // transformers writes 1e30 for "no limit": not sane, keep 77
            }
        }
        return (padToken, padSource, maxLength);
    }

    private static string FirstLine(string message)
    {
        int newline = message.IndexOfAny(['\r', '\n']);
        return newline < 0 ? message : message[..newline];
    }

    private static string Quote(string line) => line.Length <= 60 ? $"'{line}'" : $"'{line[..57]}...'";
}
