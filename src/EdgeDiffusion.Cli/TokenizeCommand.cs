using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using EdgeDiffusion.Text;

namespace EdgeDiffusion.Cli;

/// <summary>edgediff tokenize: the CLIP token ids a prompt becomes, and whether it was cut to fit.</summary>
public static class TokenizeCommand
{
    private static readonly JsonSerializerOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create()
    {
        var prompt = new Argument<string>("prompt") { Description = "the prompt to tokenize" };
        var model = new Option<string?>("--model") { Description = "a model folder (with tokenizer/) or a tokenizer folder (vocab.json, merges.txt)" };
        var json = new Option<bool>("--json") { Description = "print {\"tokens\": [...], \"ids\": [...], \"truncated\": ...}; ids padded as fed to the text encoder" };
        var command = new Command("tokenize", "Show the CLIP tokens and ids of a prompt, and warn when it is too long and gets truncated.")
        {
            prompt, model, json,
        };
        command.SetAction(result =>
        {
            TextWriter output = result.InvocationConfiguration.Output;
            TextWriter error = result.InvocationConfiguration.Error;
            return VerbRunner.Run(() =>
            {
                string folder = ModelOption.Resolve(result.GetValue(model));
                var tokenizer = ClipTokenizer.FromFolder(folder);
                TokenizedPrompt encoded = tokenizer.Encode(result.GetValue(prompt) ?? "");

                if (result.GetValue(json))
                    output.WriteLine(ToJson(encoded));
                else
                    WriteTable(output, tokenizer, encoded);

                if (encoded.Truncated)
                    error.WriteLine($"warning: the prompt needs {encoded.UntruncatedLength} tokens but only {tokenizer.MaxLength} fit; " +
                        $"everything from '{encoded.FirstDroppedWord}' on is dropped");
                return 0;
            }, error);
        });
        return command;
    }

    private static void WriteTable(TextWriter output, ClipTokenizer tokenizer, TokenizedPrompt encoded)
    {
        output.WriteLine($"{"#",3}  {"id",5}  token");
        for (int i = 0; i < encoded.Length; i++)
        {
            int id = encoded.Ids[i];
            string token = encoded.Tokens[i];
            string text = tokenizer.Decode([id], skipSpecial: false);
            // show the decoded text beside byte-level symbols that do not read as themselves (non-ASCII)
            string shown = token.EndsWith("</w>", StringComparison.Ordinal) ? token[..^4] : token;
            output.WriteLine(text == shown || text.Contains('\uFFFD') ? $"{i,3}  {id,5}  {token}" : $"{i,3}  {id,5}  {token}  ({text})");
        }
        int pad = tokenizer.MaxLength - encoded.Length;
        output.WriteLine($"{encoded.Length} of {tokenizer.MaxLength} tokens" +
            (pad > 0 ? $", then {pad} x pad id {tokenizer.PadId} ({tokenizer.Token(tokenizer.PadId)})" : "") +
            (encoded.Truncated ? $"; truncated from {encoded.UntruncatedLength}" : ""));
    }

    /// <summary>One line, spaced like Python's json.dumps so it diffs cleanly against transformers' output.</summary>
    internal static string ToJson(TokenizedPrompt encoded) =>
        $"{{\"tokens\": [{string.Join(", ", encoded.Tokens.Select(t => JsonSerializer.Serialize(t, JsonOptions)))}], " +
        $"\"ids\": [{string.Join(", ", encoded.Ids)}], \"truncated\": {(encoded.Truncated ? "true" : "false")}}}";
}
