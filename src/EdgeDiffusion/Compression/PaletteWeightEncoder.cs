using EdgeDiffusion.Onnx;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Compression;

/// <summary>
/// Palettization (<see cref="CompressionMethod.Palettize"/>): every weight becomes an n-bit index into a table of 2^n
/// floats fitted by <see cref="KMeans1D"/>, one table per tensor or per group of output channels, optionally after dividing
/// each output channel by its max |w| (multiplied back in the graph).
/// </summary>
/// <remarks>
/// Stored: the indices packed n bits each (uint8 [periods, P], see <see cref="IndexUnpacking"/>), the tables flattened to
/// float [groups·2^n], and with grouping int32 per-channel table offsets, with scaling float per-channel scales, both
/// shaped to broadcast against the weight ([C, 1, …] for Conv W, [N] for MatMul B). The indices keep the weight's own
/// layout, so a MatMul B [K, N] (channels on axis 1) needs no Transpose: offsets and scales broadcast along N.
/// Graph: unpack → Reshape(shape) → Cast(int32) [→ Add(offsets)] → Gather(table) [→ Mul(scales)].
/// </remarks>
public sealed class PaletteWeightEncoder : IWeightEncoder
{
    /// <param name="spec">A palettize spec (validated here).</param>
    public PaletteWeightEncoder(CompressionSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Method != CompressionMethod.Palettize)
            throw new InvalidArgumentException("--method", $"the palette encoder needs method palettize, got {spec.Method.ToString().ToLowerInvariant()}");
        Spec = spec.Validate();
    }

    public CompressionSpec Spec { get; }

    public string Description => Spec.ToString();

    bool Grouped => Spec.PaletteGranularity == PaletteGranularity.PerGroupedChannel;

    public string? CannotEncode(WeightUse use)
    {
        ArgumentNullException.ThrowIfNull(use);
        if (use.Shape.Count == 0 || use.Shape.Any(d => d <= 0)) return $"shape [{string.Join(", ", use.Shape)}] has no elements to palettize";
        if (use.ElementCount > int.MaxValue) return $"{use.ElementCount} elements is more than one tensor can be palettized in memory";
        if ((Grouped || Spec.PerChannelScale) && use.Shape.Count < 2)
            return "a 1-D tensor has no output channels; palettize it per tensor without per-channel scale";
        return null;
    }

    public EncodedWeight Encode(WeightUse use, ReadOnlySpan<float> weights, Func<string, string> uniqueName)
    {
        ArgumentNullException.ThrowIfNull(use);
        ArgumentNullException.ThrowIfNull(uniqueName);
        if (CannotEncode(use) is { } why) throw new InvalidArgumentException(use.Name, why);
        if (weights.Length != use.ElementCount)
            throw new InvalidArgumentException(use.Name, $"shape [{string.Join(", ", use.Shape)}] holds {use.ElementCount} weights, got {weights.Length}");
        for (int i = 0; i < weights.Length; i++)
            if (!float.IsFinite(weights[i])) throw new InvalidArgumentException(use.Name, $"element {i} is {weights[i]}; only finite weights can be palettized");

        int bits = Spec.Bits, k = 1 << bits, count = weights.Length;
        bool perChannel = Grouped || Spec.PerChannelScale;
        int axis = perChannel ? use.OutputChannelAxis : 0;
        int channels = perChannel ? (int)use.Shape[axis] : 1;
        int channelSize = count / channels;

        // Channel-major working copy: channel c is data[c·channelSize, (c+1)·channelSize). Axis 1 only occurs for 2-D [K, N].
        var data = new float[count];
        if (axis == 0) weights.CopyTo(data);
        else Transpose<float>(weights, (int)use.Shape[0], channels, data);

        float[]? scales = null;
        if (Spec.PerChannelScale)
        {
            scales = new float[channels];
            Parallel.For(0, channels, c =>
            {
                var row = data.AsSpan(c * channelSize, channelSize);
                float max = 0;
                foreach (float w in row) max = MathF.Max(max, MathF.Abs(w));
                float scale = max > 0 ? max : 1f; // an all-zero channel clusters as is
                scales[c] = scale;
                for (int i = 0; i < row.Length; i++) row[i] /= scale;
            });
        }

        int groupSize = Grouped ? Math.Min(Spec.GroupSize, channels) : channels;
        int groups = (channels + groupSize - 1) / groupSize;
        int groupLength = groupSize * channelSize;
        var centroids = new float[groups][];
        Parallel.For(0, groups, g =>
        {
            int start = g * groupLength, length = Math.Min(groupLength, count - start);
            centroids[g] = KMeans1D.Fit(data.AsSpan(start, length), bits, Spec.Seed + (ulong)g).Centroids;
        });

        // Nearest-entry assignment in chunks (a group's run is contiguous in the channel-major copy).
        var indicesCm = new byte[count];
        const int Chunk = 1 << 16;
        Parallel.For(0, (count + Chunk - 1) / Chunk, ci =>
        {
            int start = ci * Chunk, end = Math.Min(count, start + Chunk);
            while (start < end)
            {
                int g = start / groupLength, stop = Math.Min(end, (g + 1) * groupLength);
                KMeans1D.AssignIndices(data.AsSpan(start, stop - start), centroids[g], indicesCm.AsSpan(start, stop - start));
                start = stop;
            }
        });

        var luts = new float[groups * k];
        for (int g = 0; g < groups; g++) centroids[g].CopyTo(luts, g * k);

        // Indices in the weight's layout, and what the graph computes from them.
        byte[] indices;
        if (axis == 0) indices = indicesCm;
        else
        {
            indices = new byte[count];
            Transpose<byte>(indicesCm, channels, (int)use.Shape[0], indices);
        }
        var reconstructed = new float[count];
        if (!perChannel)
            Parallel.For(0, (count + Chunk - 1) / Chunk, ci =>
            {
                for (int i = ci * Chunk, end = Math.Min(count, i + Chunk); i < end; i++) reconstructed[i] = luts[indices[i]];
            });
        else if (axis == 0)
            Parallel.For(0, channels, c =>
            {
                int table = c / groupSize * k;
                float s = scales?[c] ?? 1f;
                for (int i = c * channelSize, end = i + channelSize; i < end; i++)
                    reconstructed[i] = scales is null ? luts[table + indices[i]] : luts[table + indices[i]] * s;
            });
        else
            Parallel.For(0, count / channels, row =>
            {
                for (int c = 0, i = row * channels; c < channels; c++, i++)
                {
                    float v = luts[c / groupSize * k + indices[i]];
                    reconstructed[i] = scales is null ? v : v * scales[c];
                }
            });

        // Graph.
        var e = new NodeEmitter(use.Name, uniqueName);
        long[] broadcast = BroadcastShape(use.Shape.Count, axis, channels);
        string packed = e.Initializer("palette_indices", IndexUnpacking.Pack(indices, bits));
        string lut = e.Initializer("palette_lut", TensorData.Create<float>("", [luts.Length], luts));
        string index = e.Cast(IndexUnpacking.Emit(e, packed, bits, use.Shape), DT.Int32, "palette_index");
        if (groups > 1)
        {
            var offsets = new int[channels];
            for (int c = 0; c < channels; c++) offsets[c] = c / groupSize * k;
            index = e.Op("Add", [index, e.Initializer("palette_offsets", TensorData.Create<int>("", broadcast, offsets))], "palette_table_index");
        }
        string gathered = e.Op("Gather", [lut, index], "palette_values", scales is null ? use.Name : null);
        if (scales is not null)
            e.Op("Mul", [gathered, e.Initializer("palette_scale", TensorData.Create<float>("", broadcast, scales))], "palette_scaled", use.Name);

        string detail = $"{bits}-bit, " +
            (Grouped ? $"{groups} table{(groups == 1 ? "" : "s")} of {groupSize} channel{(groupSize == 1 ? "" : "s")} (axis {axis})" : "per-tensor table") +
            (scales is null ? "" : $", per-channel scale (axis {axis})");
        return new EncodedWeight
        {
            OutputName = use.Name,
            Initializers = e.Initializers,
            Nodes = e.Nodes,
            Reconstructed = reconstructed,
            Method = "palettize",
            Bits = bits,
            Detail = detail,
            MinimumOpset = IndexUnpacking.MinimumOpset(bits),
        };
    }

    // [C, 1, …, 1] for channels on axis 0 of a rank-r weight, [C] for the last axis of a 2-D one; [] when per-tensor.
    static long[] BroadcastShape(int rank, int axis, int channels)
    {
        var shape = new long[rank - axis];
        Array.Fill(shape, 1L);
        shape[0] = channels;
        return shape;
    }

    static void Transpose<T>(ReadOnlySpan<T> source, int rows, int columns, Span<T> destination)
    {
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
                destination[c * rows + r] = source[r * columns + c];
    }
}
