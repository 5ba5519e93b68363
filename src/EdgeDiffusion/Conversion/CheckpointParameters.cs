using EdgeDiffusion.Architectures;
using EdgeDiffusion.Checkpoints;
using EdgeDiffusion.Onnx;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Conversion;

/// <summary>
/// The tensors of one checkpoint (one diffusers component's safetensors file or sharded index) and which of them the
/// graphs built from it have taken. Several <see cref="CheckpointParameters"/> may share one ledger (vae_decoder and
/// vae_encoder both come from the AutoencoderKL checkpoint), so the check that every tensor was used exactly once is
/// over their union: <see cref="ThrowIfIncomplete"/>.
/// </summary>
public sealed class CheckpointKeys
{
    private readonly SafetensorsCheckpoint _checkpoint;
    private readonly HashSet<string> _nonParameters;
    private readonly Func<string, IEnumerable<string>>? _legacyNames;
    private readonly HashSet<string> _used = [];
    private readonly List<string> _missing = [];

    /// <param name="checkpoint">The open checkpoint (owned by the caller).</param>
    /// <param name="nonParameters">Tensors known not to be graph parameters (buffers such as CLIP's position_ids): never required to be used.</param>
    /// <param name="legacyNames">Older names a parameter may be stored under (tried when its own name is absent).</param>
    public CheckpointKeys(SafetensorsCheckpoint checkpoint, IEnumerable<string>? nonParameters = null, Func<string, IEnumerable<string>>? legacyNames = null)
    {
        _checkpoint = checkpoint;
        _nonParameters = [.. nonParameters ?? []];
        _legacyNames = legacyNames;
    }

    /// <summary>The checkpoint's path (a file or an index).</summary>
    public string Path => _checkpoint.Path;

    /// <summary>The keys taken so far.</summary>
    public IReadOnlyCollection<string> Used => _used;

    /// <summary>
    /// The values of the tensor for <paramref name="p"/> as float32 (F32, F16, BF16 widened exactly), or null when the
    /// checkpoint lacks it (recorded; <see cref="ThrowIfIncomplete"/> reports it). A shape other than the declared one, or a
    /// second use of the same key, throws at once.
    /// </summary>
    public float[]? Take(ParameterInfo p)
    {
        string? key = _checkpoint.Contains(p.Name) ? p.Name : _legacyNames?.Invoke(p.Name).FirstOrDefault(_checkpoint.Contains);
        if (key is null)
        {
            _missing.Add(p.Name);
            return null;
        }
        var info = _checkpoint.Get(key);
        string file = _checkpoint.FileOf(key).Path;
        bool same = info.Shape.SequenceEqual(p.Shape);
        // legacy attention projections were stored as 1×1 convs [out, in, 1, 1]; the Linear declares [out, in]
        bool legacyConv = key != p.Name && info.Shape.Count == 4 && info.Shape[2] == 1 && info.Shape[3] == 1 && p.Shape.Length == 2
            && info.Shape[0] == p.Shape[0] && info.Shape[1] == p.Shape[1];
        if (!same && !legacyConv)
            throw new ConversionException(ConversionProblem.ShapeMismatch, file,
                $"tensor '{key}' is [{string.Join(", ", info.Shape)}] but the architecture read from config.json declares [{string.Join(", ", p.Shape)}] for it; the config does not belong to these weights",
                [key]);
        if (!_used.Add(key))
            throw new ConversionException(ConversionProblem.UnusedKeys, file, $"tensor '{key}' would be used twice (for '{p.Name}')", [key]);
        return _checkpoint.ReadFloat32(key);
    }

    /// <summary>Throws when a declared parameter was missing; call after each graph is built.</summary>
    public void ThrowIfMissing()
    {
        if (_missing.Count > 0)
            throw new ConversionException(ConversionProblem.MissingKeys, Path,
                $"lacks {_missing.Count} tensor(s) the architecture read from config.json needs: {ConversionException.List(_missing)}", [.. _missing]);
    }

    /// <summary>Throws when a parameter was missing or a tensor (other than the known non-parameters) was not used; call after every graph from this checkpoint is built.</summary>
    public void ThrowIfIncomplete()
    {
        ThrowIfMissing();
        var unused = _checkpoint.Names.Where(n => !_used.Contains(n) && !_nonParameters.Contains(n)).ToList();
        if (unused.Count > 0)
            throw new ConversionException(ConversionProblem.UnusedKeys, Path,
                $"holds {unused.Count} tensor(s) the architecture read from config.json has no place for: {ConversionException.List(unused)}; the config does not describe these weights (or the model has parts not supported)",
                unused);
    }
}

/// <summary>
/// A <see cref="ParameterSink"/> that takes each declared parameter from a checkpoint by its diffusers/transformers name
/// and PyTorch shape (see <see cref="CheckpointKeys.Take"/>). Without a model path every weight is inline; with one,
/// weights of at least the options' threshold are streamed to the model's external data file through the same writer
/// <see cref="StreamedRandomParameters"/> uses (<see cref="Commit"/> renames it into place). A missing tensor becomes a
/// placeholder graph input so the build completes and every missing name can be reported at once.
/// </summary>
public sealed class CheckpointParameters : ParameterSink, IDisposable
{
    private readonly CheckpointKeys _keys;
    private readonly ExternalDataWriter? _external;

    public CheckpointParameters(CheckpointKeys keys, string? modelPath = null, OnnxSaveOptions? external = null)
    {
        _keys = keys;
        if (modelPath is not null) _external = new ExternalDataWriter(modelPath, external ?? OnnxSaveOptions.External());
    }

    public CheckpointKeys Keys => _keys;

    protected override string Create(GraphBuilder builder, ParameterInfo p)
    {
        var values = _keys.Take(p);
        if (values is null) return builder.Input(p.Name, DT.Float, p.Shape.Select(d => (Dim)d).ToArray());
        if (_external is not null && _external.IsExternal(p))
            return _external.Write(builder, p, values.Length, (first, n) => values.AsSpan((int)first, n));
        return builder.Initializer<float>(p.Name, p.Shape, values);
    }

    /// <summary>Renames the external data file into place (no-op when inline).</summary>
    public void Commit() => _external?.Commit();

    public void Dispose() => _external?.Dispose();
}
