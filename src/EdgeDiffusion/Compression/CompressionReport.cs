using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeDiffusion.Compression;

/// <summary>One compressed weight in a <see cref="CompressionReport"/>.</summary>
/// <param name="Component">The model folder component ("unet", …); "" for a single model.</param>
/// <param name="Op">The reading op type ("Conv", "MatMul", "Gemm→MatMul" when rewritten, "mixed" for several).</param>
/// <param name="Shape">The stored weight's shape (a rewritten Gemm weight is transposed to [K, N]).</param>
/// <param name="SnrDb">Weight SNR of the reconstruction in dB (+∞ when exact).</param>
public sealed record TensorCompression(
    string Component, string Name, string Op, IReadOnlyList<long> Shape, string Method, double Bits, string Detail,
    long BytesBefore, long BytesAfter, double SnrDb)
{
    public long Parameters => Shape.Aggregate(1L, (a, d) => a * d);
}

/// <summary>A weight chosen by the selection but left as it was, and why.</summary>
public sealed record SkippedWeight(string Component, string Name, string Reason);

/// <summary>
/// What a compression did: per weight (name, op, shape, method, bits, bytes before/after, weight SNR) and totals,
/// over the compressed weights and over every initializer of the model(s).
/// </summary>
public sealed record CompressionReport
{
    public required IReadOnlyList<TensorCompression> Tensors { get; init; }
    public IReadOnlyList<SkippedWeight> Skipped { get; init; } = [];

    /// <summary>Initializer bytes of the whole model(s) before and after.</summary>
    public required long ModelBytesBefore { get; init; }
    public required long ModelBytesAfter { get; init; }

    public long BytesBefore => Tensors.Sum(t => t.BytesBefore);
    public long BytesAfter => Tensors.Sum(t => t.BytesAfter);

    /// <summary>Compressed weights' bytes before / after (1 when nothing was compressed).</summary>
    public double Ratio => BytesAfter == 0 ? 1 : (double)BytesBefore / BytesAfter;

    /// <summary>Whole-model initializer bytes before / after.</summary>
    public double ModelRatio => ModelBytesAfter == 0 ? 1 : (double)ModelBytesBefore / ModelBytesAfter;

    public long Parameters => Tensors.Sum(t => t.Parameters);

    /// <summary>Nominal bits per compressed parameter, weighted by parameter count (scales and zero points not counted).</summary>
    public double AverageBits => Parameters == 0 ? 0 : Tensors.Sum(t => t.Bits * t.Parameters) / Parameters;

    /// <summary>Stored bits per compressed parameter, scales and zero points included.</summary>
    public double EffectiveBits => Parameters == 0 ? 0 : 8.0 * BytesAfter / Parameters;

    /// <summary>The reports of several components as one.</summary>
    public static CompressionReport Combine(IEnumerable<CompressionReport> reports)
    {
        var list = reports.ToList();
        return new CompressionReport
        {
            Tensors = [.. list.SelectMany(r => r.Tensors)],
            Skipped = [.. list.SelectMany(r => r.Skipped)],
            ModelBytesBefore = list.Sum(r => r.ModelBytesBefore),
            ModelBytesAfter = list.Sum(r => r.ModelBytesAfter),
        };
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        // An exact reconstruction has SNR +∞, which plain JSON numbers cannot hold: written as "Infinity".
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>The report as snake_case JSON: tensors, skipped, and the totals.</summary>
    public string ToJson() => JsonSerializer.Serialize(new
    {
        Tensors,
        Skipped,
        Totals = new
        {
            Tensors = Tensors.Count,
            Parameters,
            BytesBefore,
            BytesAfter,
            Ratio,
            AverageBits,
            EffectiveBits,
            ModelBytesBefore,
            ModelBytesAfter,
            ModelRatio,
        },
    }, JsonOptions);

    /// <summary>A plain-text table, one row per compressed weight, then the totals.</summary>
    public string ToTable()
    {
        var c = CultureInfo.InvariantCulture;
        bool components = Tensors.Any(t => t.Component.Length > 0);
        string[] header = components
            ? ["component", "name", "op", "shape", "method", "bits", "before", "after", "snr dB"]
            : ["name", "op", "shape", "method", "bits", "before", "after", "snr dB"];
        var rows = Tensors.Select(t =>
        {
            string[] row =
            [
                t.Name, t.Op, $"[{string.Join("x", t.Shape)}]", t.Detail.Length > 0 ? $"{t.Method} {t.Detail}" : t.Method,
                t.Bits.ToString("0.##", c), Bytes(t.BytesBefore), Bytes(t.BytesAfter),
                double.IsPositiveInfinity(t.SnrDb) ? "inf" : t.SnrDb.ToString("0.0", c),
            ];
            return components ? [t.Component, .. row] : row;
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
        // Numbers right-aligned, text left-aligned.
        int firstNumeric = header.Length - 4;
        var sb = new StringBuilder();
        void Line(string[] cells) => sb.AppendLine(string.Join("  ", cells.Select((cell, i) => i >= firstNumeric ? cell.PadLeft(widths[i]) : cell.PadRight(widths[i]))).TrimEnd());
        Line(header);
        foreach (var r in rows) Line(r);
        sb.AppendLine(string.Create(c,
            $"{Tensors.Count} weights, {Parameters} parameters: {Bytes(BytesBefore)} -> {Bytes(BytesAfter)} ({Ratio:0.00}x), " +
            $"{AverageBits:0.##} bits/param nominal, {EffectiveBits:0.##} stored"));
        sb.AppendLine(string.Create(c, $"model weights: {Bytes(ModelBytesBefore)} -> {Bytes(ModelBytesAfter)} ({ModelRatio:0.00}x)"));
        if (Skipped.Count > 0) sb.AppendLine(string.Create(c, $"{Skipped.Count} selected weights left as they were (see --json for why)"));
        return sb.ToString();
    }

    private static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):0.00} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):0.00} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:0.0} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} B"),
    };
}
