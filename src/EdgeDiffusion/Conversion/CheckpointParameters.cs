using System.Runtime.InteropServices;
using EdgeDiffusion.Architectures;
using EdgeDiffusion.Checkpoints;
using EdgeDiffusion.Onnx;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Conversion;

/// <summary>
/// Where a declared parameter's values lie in a checkpoint: the whole tensor <see cref="Key"/>, or row block
/// <see cref="Part"/> of <see cref="Parts"/> equal blocks of it (OpenCLIP's fused <c>in_proj_weight</c> holds q, k and v).
/// </summary>
public sealed record TensorLocation(string Key, int Part = 0, int Parts = 1);

/// <summary>
/// The tensors of one checkpoint (one diffusers component's safetensors file or sharded index, or a whole single-file
/// checkpoint) and which of them the graphs built from it have taken. Several <see cref="CheckpointParameters"/> may share
/// one ledger (vae_decoder and vae_encoder both come from the AutoencoderKL checkpoint), so the check that every tensor
/// was used exactly once is over their union: <see cref="ThrowIfIncomplete"/>.
/// </summary>
public sealed class CheckpointKeys
{
    private readonly SafetensorsCheckpoint _checkpoint;
    private readonly HashSet<string> _nonParameters;
    private readonly Func<string, TensorLocation?> _locate;
    private readonly string _architectureSource;
    private readonly Dictionary<string, HashSet<int>> _usedParts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _partsOf = new(StringComparer.Ordinal);
    private readonly List<string> _missing = [];

    /// <param name="checkpoint">The open checkpoint (owned by the caller).</param>
    /// <param name="nonParameters">Tensors known not to be graph parameters (buffers such as CLIP's position_ids, EMA copies): never required to be used.</param>
    /// <param name="legacyNames">Older names a parameter may be stored under (tried when its own name is absent).</param>
    /// <param name="locate">Where a declared name lies in a checkpoint of another layout (null: absent); replaces the by-name lookup and <paramref name="legacyNames"/>.</param>
    /// <param name="architectureSource">Where the declared shapes came from, for errors ("the architecture read from config.json").</param>
    public CheckpointKeys(SafetensorsCheckpoint checkpoint, IEnumerable<string>? nonParameters = null, Func<string, IEnumerable<string>>? legacyNames = null,
        Func<string, TensorLocation?>? locate = null, string architectureSource = "the architecture read from config.json")
    {
        _checkpoint = checkpoint;
        _nonParameters = [.. nonParameters ?? []];
        _locate = locate ?? (name =>
        {
            string? key = checkpoint.Contains(name) ? name : legacyNames?.Invoke(name).FirstOrDefault(checkpoint.Contains);
            return key is null ? null : new TensorLocation(key);
        });
        _architectureSource = architectureSource;
    }

    /// <summary>The checkpoint's path (a file or an index).</summary>
    public string Path => _checkpoint.Path;

    /// <summary>The keys taken so far (a fused tensor counts once all its parts are taken).</summary>
    public IReadOnlyCollection<string> Used => [.. _usedParts.Where(kv => kv.Value.Count == PartsOf(kv.Key)).Select(kv => kv.Key)];

    /// <summary>The known non-parameters the checkpoint holds (left unused on purpose).</summary>
    public IReadOnlyCollection<string> Ignored => _nonParameters;

    private int PartsOf(string key) => _partsOf.GetValueOrDefault(key, 1);

    /// <summary>
    /// The values of the tensor for <paramref name="p"/> as float32 (F32, F16, BF16 widened exactly), or null when the
    /// checkpoint lacks it (recorded; <see cref="ThrowIfIncomplete"/> reports it). A shape other than the declared one, or a
    /// second use of the same key (or part), throws at once.
    /// </summary>
    public float[]? Take(ParameterInfo p)
    {
        var location = _locate(p.Name);
        if (location is null || !_checkpoint.Contains(location.Key))
        {
            _missing.Add(location?.Key ?? p.Name); // the name the checkpoint should have held
            return null;
        }
        string key = location.Key;
        var info = _checkpoint.Get(key);
        string file = _checkpoint.FileOf(key).Path;
        var stored = info.Shape.ToArray();
        if (location.Parts > 1)
        {
            if (stored.Length == 0 || stored[0] % location.Parts != 0)
                throw new ConversionException(ConversionProblem.ShapeMismatch, file,
                    $"tensor '{key}' is [{string.Join(", ", stored)}], which does not split into {location.Parts} equal blocks of rows for '{p.Name}'", [key]);
            stored[0] /= location.Parts;
        }
        bool same = stored.SequenceEqual(p.Shape);
        // 1×1 convs stored for a Linear ([out, in, 1, 1] for [out, in]): legacy diffusers and LDM VAE attention, LDM proj_in/out
        bool convForLinear = key != p.Name && stored.Length == 4 && stored[2] == 1 && stored[3] == 1 && p.Shape.Length == 2
            && stored[0] == p.Shape[0] && stored[1] == p.Shape[1];
        if (!same && !convForLinear)
            throw new ConversionException(ConversionProblem.ShapeMismatch, file,
                $"tensor '{key}'{(location.Parts > 1 ? $" (block {location.Part + 1} of {location.Parts})" : "")} is [{string.Join(", ", stored)}] but {_architectureSource} declares [{string.Join(", ", p.Shape)}] for '{p.Name}'; the architecture does not belong to these weights",
                [key]);
        _partsOf[key] = location.Parts;
        if (!_usedParts.TryGetValue(key, out var parts)) _usedParts[key] = parts = [];
        if (!parts.Add(location.Part))
            throw new ConversionException(ConversionProblem.UnusedKeys, file, $"tensor '{key}' would be used twice (for '{p.Name}')", [key]);
        var values = _checkpoint.ReadFloat32(key);
        if (location.Parts == 1) return values;
        long block = values.LongLength / location.Parts;
        return values.AsSpan((int)(block * location.Part), (int)block).ToArray();
    }

    /// <summary>Throws when a declared parameter was missing; call after each graph is built.</summary>
    public void ThrowIfMissing()
    {
        if (_missing.Count > 0)
            throw new ConversionException(ConversionProblem.MissingKeys, Path,
                $"lacks {_missing.Count} tensor(s) {_architectureSource} needs: {ConversionException.List(_missing)}", [.. _missing]);
    }

    /// <summary>Throws when a parameter was missing or a tensor (other than the known non-parameters) was not used in full; call after every graph from this checkpoint is built.</summary>
    public void ThrowIfIncomplete()
    {
        ThrowIfMissing();
        var unused = _checkpoint.Names
            .Where(n => !_nonParameters.Contains(n) && !(_usedParts.TryGetValue(n, out var parts) && parts.Count == PartsOf(n)))
            .ToList();
        if (unused.Count > 0)
            throw new ConversionException(ConversionProblem.UnusedKeys, Path,
                $"holds {unused.Count} tensor(s) {_architectureSource} has no place for: {ConversionException.List(unused)}; the architecture does not describe these weights (or the model has parts not supported)",
                unused);
    }
}

/// <summary>
/// A <see cref="ParameterSink"/> that takes each declared parameter from a checkpoint by its diffusers/transformers name
/// and PyTorch shape (see <see cref="CheckpointKeys.Take"/>). Without a model path every weight is inline; with one,
/// weights of at least the options' threshold are streamed to the model's external data file through the same writer
/// <see cref="StreamedRandomParameters"/> uses (<see cref="Commit"/> renames it into place). A missing tensor becomes a
/// placeholder graph input so the build completes and every missing name can be reported at once. With
/// <c>keepFloat16</c> each weight is stored as a float16 initializer read through a Cast to float32: the file holds half
/// the bytes, and ONNX Runtime's CPU kernels (which lack float16 for GroupNorm, LayerNorm and most others) still compute in float32.
/// </summary>
public sealed class CheckpointParameters : ParameterSink, IDisposable
{
    private readonly CheckpointKeys _keys;
    private readonly ExternalDataWriter? _external;
    private readonly bool _keepFloat16;

    public CheckpointParameters(CheckpointKeys keys, string? modelPath = null, OnnxSaveOptions? external = null, bool keepFloat16 = false)
    {
        _keys = keys;
        _keepFloat16 = keepFloat16;
        if (modelPath is not null) _external = new ExternalDataWriter(modelPath, external ?? OnnxSaveOptions.External());
    }

    public CheckpointKeys Keys => _keys;

    protected override string Create(GraphBuilder builder, ParameterInfo p)
    {
        var values = _keys.Take(p);
        if (values is null) return builder.Input(p.Name, DT.Float, p.Shape.Select(d => (Dim)d).ToArray());
        if (_keepFloat16)
        {
            var half = new Half[values.Length];
            for (int i = 0; i < half.Length; i++) half[i] = (Half)values[i];
            string stored = _external is not null && _external.IsExternal(p)
                ? _external.Write(builder, p.Name, p.Shape, DT.Float16, MemoryMarshal.AsBytes(half.AsSpan()))
                : builder.Initializer<Half>(p.Name, p.Shape, half);
            return builder.Cast(stored, DT.Float);
        }
        if (_external is not null && _external.IsExternal(p))
            return _external.Write(builder, p, values.Length, (first, n) => values.AsSpan((int)first, n));
        return builder.Initializer<float>(p.Name, p.Shape, values);
    }

    /// <summary>Renames the external data file into place (no-op when inline).</summary>
    public void Commit() => _external?.Commit();

    public void Dispose() => _external?.Dispose();
}
