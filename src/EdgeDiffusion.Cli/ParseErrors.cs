using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Parsing;

namespace EdgeDiffusion.Cli;

/// <summary>
/// Command-line mistakes as the one line every other bad input gets: <c>error: &lt;option&gt;: &lt;problem and fix&gt;</c>
/// (System.CommandLine's own report is several lines, help included, and exit code 1).
/// </summary>
public static class ParseErrors
{
    /// <summary>
    /// The one-line problem (without "error: ") when the command line is wrong, else null: a parse error, or a token that
    /// looks like an option but is none (System.CommandLine takes an unknown <c>--stpes</c> for the prompt).
    /// Help and version requests are never errors.
    /// </summary>
    public static string? Describe(ParseResult result)
    {
        if (result.Action is HelpAction || result.Action is { } a && a.GetType().Name == "VersionOptionAction") return null;
        var command = result.CommandResult.Command;
        string verb = CommandPath(result.CommandResult);

        if (UnknownOption(result) is { } unknown)
        {
            string suggestion = Suggest(unknown, command) is { } s ? $"did you mean {s}? " : "";
            return $"{unknown}: unknown option; {suggestion}see {verb} --help";
        }
        if (result.Errors.Count == 0) return null;

        foreach (var error in result.Errors)
        {
            switch (error.SymbolResult)
            {
                case ArgumentResult { Parent: OptionResult option } value:
                    return OptionValue(option.Option, value.Tokens.Select(t => t.Value).ToList(), verb);
                case OptionResult option:
                    return OptionValue(option.Option, option.Tokens.Select(t => t.Value).ToList(), verb, error.Message);
            }
        }
        if (result.UnmatchedTokens.Count > 0)
        {
            string token = result.UnmatchedTokens[0];
            if (command is RootCommand)
                return $"{token}: unknown verb; use one of {Verbs(command)} (edgediff --help says what each does)";
            return command.Arguments.Count > 0
                ? $"{token}: unexpected extra argument; put a prompt or path of several words in quotes (see {verb} --help)"
                : $"{token}: unexpected argument; {verb} takes none (see {verb} --help)";
        }
        foreach (var error in result.Errors)
        {
            if (error.SymbolResult is ArgumentResult { Argument: var argument } missing && missing.Tokens.Count == 0)
                return $"<{argument.Name}>: missing; give it as {verb} <{argument.Name}> (see {verb} --help)";
        }
        if (command is RootCommand || command.Subcommands.Count > 0 && command.Action is null)
            return $"{verb}: no verb given; use one of {Verbs(command)} (edgediff <verb> --help for each)";
        foreach (var argument in command.Arguments)
        {
            bool given = result.CommandResult.Children.OfType<ArgumentResult>().Any(r => r.Argument == argument && r.Tokens.Count > 0);
            if (!given && argument.Arity.MinimumNumberOfValues > 0)
                return $"<{argument.Name}>: missing; give it as {verb} <{argument.Name}> (see {verb} --help)";
        }
        return $"{verb}: {OneLine(result.Errors[0].Message)}; see {verb} --help";
    }

    /// <summary>A bad or missing option value, in words that name what the option takes.</summary>
    private static string OptionValue(Option option, IReadOnlyList<string> tokens, string verb, string? message = null)
    {
        string name = option.Name;
        if (tokens.Count == 0) return $"{name}: needs a value ({Expected(option)}); see {verb} --help";
        string token = tokens[^1];
        var type = Nullable.GetUnderlyingType(option.ValueType) ?? option.ValueType;
        if (type.IsArray) type = type.GetElementType()!;
        string problem = type switch
        {
            _ when type == typeof(ulong) || type == typeof(uint) || type == typeof(ushort) || type == typeof(byte) => "is not a whole number ≥ 0",
            _ when type == typeof(int) || type == typeof(long) || type == typeof(short) => "is not a whole number",
            _ when type == typeof(double) || type == typeof(float) || type == typeof(decimal) => "is not a number (write it like 7.5)",
            _ when type == typeof(bool) => "is not true or false",
            _ when type.IsEnum => $"is not one of {string.Join(", ", Enum.GetNames(type).Select(n => n.ToLowerInvariant()))}",
            _ => message is null ? "is not valid" : $"is not valid ({OneLine(message)})",
        };
        return $"{name}: \"{token}\" {problem}";
    }

    private static string Expected(Option option)
    {
        var type = Nullable.GetUnderlyingType(option.ValueType) ?? option.ValueType;
        return type switch
        {
            _ when type == typeof(ulong) || type == typeof(uint) => "a whole number ≥ 0",
            _ when type == typeof(int) || type == typeof(long) => "a whole number",
            _ when type == typeof(double) || type == typeof(float) => "a number",
            _ when type.IsEnum => string.Join(" or ", Enum.GetNames(type).Select(n => n.ToLowerInvariant())),
            _ => option.HelpName is { Length: > 0 } help ? help : "a value",
        };
    }

    /// <summary>The first token that looks like an option (<c>-x</c>, <c>--xyz</c>, not a number) but was taken as an argument or left unmatched.</summary>
    private static string? UnknownOption(ParseResult result)
    {
        var arguments = result.CommandResult.Children.OfType<ArgumentResult>().SelectMany(r => r.Tokens).ToHashSet();
        var unmatched = result.UnmatchedTokens.ToHashSet(StringComparer.Ordinal);
        foreach (var token in result.Tokens)
        {
            if (token.Type == TokenType.DoubleDash) break; // after "--" everything is an argument, "-x" included
            if (token.Type != TokenType.Argument || !LooksLikeOption(token.Value)) continue;
            if (arguments.Contains(token) || unmatched.Contains(token.Value)) return token.Value;
        }
        return null;
    }

    private static bool LooksLikeOption(string token) =>
        token.Length > 1 && token[0] == '-' && !double.TryParse(token, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out _);

    /// <summary>The command's option name or alias nearest <paramref name="token"/>, when it is close (a typo), else null.</summary>
    private static string? Suggest(string token, Command command)
    {
        string bare = token.Split('=', 2)[0];
        var names = command.Options.Where(o => !o.Hidden).SelectMany(o => o.Aliases.Prepend(o.Name)).Where(n => n.StartsWith("--", StringComparison.Ordinal));
        var best = names.Select(n => (Name: n, Distance: Distance(bare, n))).OrderBy(p => p.Distance).ThenBy(p => p.Name, StringComparer.Ordinal).FirstOrDefault();
        return best.Name is not null && best.Distance <= Math.Max(1, (bare.Length - 2) / 3) ? best.Name : null;
    }

    private static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        return d[a.Length, b.Length];
    }

    private static string Verbs(Command command) => string.Join(", ", command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name));

    private static string CommandPath(CommandResult result)
    {
        var names = new List<string>();
        for (SymbolResult? r = result; r is not null; r = r.Parent)
            if (r is CommandResult c) names.Insert(0, c.Command is RootCommand ? "edgediff" : c.Command.Name);
        return string.Join(" ", names);
    }

    private static string OneLine(string message) => string.Join(" ", message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).TrimEnd('.');
}
