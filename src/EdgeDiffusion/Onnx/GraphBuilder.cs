using System.Runtime.InteropServices;
using EdgeDiffusion.Onnx.Protobuf;
using Google.Protobuf;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Onnx;

/// <summary>How <see cref="GraphBuilder.Gelu"/> computes GELU.</summary>
public enum GeluApproximation
{
    /// <summary>Exact: 0.5·x·(1 + erf(x/√2)). ONNX Runtime fuses this pattern into one Gelu kernel.</summary>
    None,

    /// <summary>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    Tanh,
}

/// <summary>
/// Builds an ONNX model one typed operator at a time. Every helper returns the name of the value it produces, checks that
/// its inputs are already defined, and names its node uniquely: the op type, prefixed by the current <see cref="Scope"/>
/// path and numbered on repeats (<c>down.0.resnet/Conv</c>, <c>down.0.resnet/Conv_1</c>). Outputs are named after
/// their node unless an explicit <c>output</c> name is given; initializers keep exactly the names given.
/// <para>Operators are emitted in the encoding of the chosen default-domain opset (17 by default; 17 to 23), e.g. ReduceMean
/// axes as an attribute before 18 and as an input from 18. Operators ONNX Runtime's CPU provider lacks or that are too new
/// for opset 17 (GroupNormalization, Gelu) are emitted decomposed.</para>
/// <para>Initializer bytes are wrapped, not copied, into raw_data, so a builder holds each weight once.</para>
/// </summary>
public sealed class GraphBuilder
{
    public const string Producer = "EdgeDiffusion";
    public const int DefaultOpset = 17;
    public const int MinOpset = 17;
    public const int MaxOpset = 23;

    private readonly GraphProto _graph;
    private readonly Dictionary<string, long> _imports = new(StringComparer.Ordinal);
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly HashSet<string> _values = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _counters = new(StringComparer.Ordinal);
    private readonly List<string> _scopes = [];
    private bool _built;

    public GraphBuilder(int opset = DefaultOpset, string graphName = "main")
    {
        if (opset < MinOpset || opset > MaxOpset)
            throw new ArgumentOutOfRangeException(nameof(opset), opset, $"the builder emits opsets {MinOpset} to {MaxOpset}");
        Opset = opset;
        _imports[""] = opset;
        _graph = new GraphProto { Name = graphName };
    }

    /// <summary>The default-domain (ai.onnx) opset the graph is written for.</summary>
    public int Opset { get; }

    /// <summary>The IR version matching <see cref="Opset"/> (ONNX's release table).</summary>
    public long IrVersion => IrVersionFor(Opset);

    /// <summary>The graph under construction (for inspection; edit it through the builder).</summary>
    public GraphProto Graph => _graph;

    /// <summary>The IR version ONNX released alongside default-domain opset <paramref name="opset"/>.</summary>
    public static long IrVersionFor(int opset) => opset switch
    {
        >= 15 and <= 18 => 8,
        19 or 20 => 9,
        21 or 22 => 10,
        23 => 11,
        _ => throw new ArgumentOutOfRangeException(nameof(opset), opset, "no IR version is known for this opset"),
    };

    /// <summary>Imports another operator domain (e.g. "com.microsoft", 1) so <see cref="Node"/> can use its operators.</summary>
    public void ImportOpset(string domain, long version)
    {
        if (domain.Length == 0 || domain == "ai.onnx") throw new ArgumentException("the default domain's opset is set in the constructor", nameof(domain));
        _imports[domain] = version;
    }

    // ---------------------------------------------------------------- naming

    /// <summary>Pushes a name prefix for nodes (and for <see cref="Name"/>) until the returned handle is disposed; nested scopes join with '.'.</summary>
    public IDisposable Scope(string name)
    {
        if (string.IsNullOrEmpty(name)) throw new ArgumentException("a scope needs a name", nameof(name));
        _scopes.Add(name);
        return new ScopeHandle(this, _scopes.Count);
    }

    /// <summary>The current scope path ("" outside any scope).</summary>
    public string ScopePath => string.Join('.', _scopes);

    /// <summary><paramref name="local"/> prefixed with the scope path: inside Scope("down_blocks.0.resnets.0"), Name("conv1.weight") is "down_blocks.0.resnets.0.conv1.weight".</summary>
    public string Name(string local) => _scopes.Count == 0 ? local : $"{ScopePath}.{local}";

    /// <summary>A name unused by any value, node or initializer so far (<paramref name="hint"/>, else hint_1, hint_2, …), reserved at once.</summary>
    public string UniqueName(string hint)
    {
        if (_names.Add(hint)) return hint;
        int k = _counters.GetValueOrDefault(hint, 1);
        string candidate;
        do candidate = $"{hint}_{k++}"; while (!_names.Add(candidate));
        _counters[hint] = k;
        return candidate;
    }

    /// <summary>Whether <paramref name="value"/> is defined: a graph input, an initializer or a node output.</summary>
    public bool IsDefined(string value) => _values.Contains(value);

    private sealed class ScopeHandle(GraphBuilder builder, int depth) : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (_disposed) return;
            if (builder._scopes.Count != depth) throw new InvalidOperationException("scopes must be closed innermost first");
            builder._scopes.RemoveAt(depth - 1);
            _disposed = true;
        }
    }

    // ---------------------------------------------------------------- graph interface

    /// <summary>Declares a graph input. <paramref name="dims"/> may mix sizes and symbolic names; null leaves the rank unknown.</summary>
    public string Input(string name, DT elemType, IReadOnlyList<Dim>? dims)
    {
        Define(name);
        _graph.Input.Add(Dim.TensorValueInfo(name, elemType, dims));
        return name;
    }

    /// <summary>Declares the defined value <paramref name="value"/> a graph output (use an op's output name, or Identity, to pick its name).</summary>
    public string Output(string value, DT elemType, IReadOnlyList<Dim>? dims = null)
    {
        CheckOpen();
        Require(value);
        if (_graph.Output.Any(o => o.Name == value)) throw new ArgumentException($"'{value}' is already a graph output", nameof(value));
        _graph.Output.Add(Dim.TensorValueInfo(value, elemType, dims));
        return value;
    }

    // ---------------------------------------------------------------- initializers

    /// <summary>Adds an initializer named exactly <paramref name="name"/> holding a copy of <paramref name="values"/>.</summary>
    public string Initializer<T>(string name, ReadOnlySpan<long> dims, ReadOnlySpan<T> values) where T : unmanaged
    {
        CheckCount(name, dims, values.Length);
        var raw = MemoryMarshal.AsBytes(values).ToArray();
        return InitializerRaw(name, (DT)TensorData.DataTypeOf<T>(), dims, raw);
    }

    /// <summary>Adds an initializer whose raw little-endian bytes are <paramref name="raw"/>; the array is wrapped, not copied, and must not change afterwards.</summary>
    public string InitializerRaw(string name, DT type, ReadOnlySpan<long> dims, byte[] raw)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)type };
        tensor.Dims.AddRange(dims.ToArray());
        long need = TensorData.RawByteCount(tensor);
        if (need != raw.Length) throw new ArgumentException($"initializer '{name}' needs {need} bytes for its shape and type, got {raw.Length}", nameof(raw));
        tensor.RawData = UnsafeByteOperations.UnsafeWrap(raw);
        return Initializer(tensor);
    }

    /// <summary>Adds a packed int4 (signed) or uint4 initializer; values must lie in [-8, 7] or [0, 15].</summary>
    public string InitializerInt4(string name, ReadOnlySpan<long> dims, ReadOnlySpan<int> values, bool signed = true)
    {
        CheckCount(name, dims, values.Length);
        var packed = new byte[(values.Length + 1) / 2];
        SubByte.Pack4(values, packed, signed);
        return InitializerRaw(name, signed ? DT.Int4 : DT.Uint4, dims, packed);
    }

    /// <summary>Adds <paramref name="tensor"/> as an initializer under its own name.</summary>
    public string Initializer(TensorProto tensor)
    {
        Define(tensor.Name);
        _graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    /// <summary>
    /// Adds an initializer of seeded random values uniform in [-<paramref name="scale"/>, <paramref name="scale"/>): float32,
    /// float16 or bfloat16. The values depend only on the seed (by default one derived from the name) and the element index
    /// (see <see cref="SeededRandom"/>), and are generated in parallel straight into the raw bytes.
    /// </summary>
    public string Random(string name, ReadOnlySpan<long> dims, float scale, ulong? seed = null, DT type = DT.Float)
    {
        long count = 1;
        foreach (long d in dims) count = d >= 0 ? checked(count * d) : throw new ArgumentException($"initializer '{name}' has a negative dimension", nameof(dims));
        ulong s = seed ?? SeededRandom.SeedFrom(name);
        long bytes = DataTypes.RawByteCount((int)type, count);
        if (bytes > Array.MaxLength) throw new ArgumentException($"initializer '{name}' would be {bytes} bytes, more than one array holds", nameof(dims));
        var raw = new byte[bytes];
        switch (type)
        {
            case DT.Float:
                SeededRandom.FillUniformRaw(raw, scale, s);
                break;
            case DT.Float16:
            case DT.Bfloat16:
                SeededRandom.ForChunks((int)count, (start, length) =>
                {
                    var buffer = new float[length];
                    SeededRandom.FillUniform(buffer, scale, s, start);
                    var dst = MemoryMarshal.Cast<byte, ushort>(raw.AsSpan(start * 2, length * 2));
                    for (int i = 0; i < length; i++)
                        dst[i] = type == DT.Float16 ? BitConverter.HalfToUInt16Bits((Half)buffer[i]) : BFloat16.FromFloat(buffer[i]).Bits;
                });
                break;
            default:
                throw new ArgumentException($"random initializers are float, float16 or bfloat16, not {DataTypes.Name((int)type)}", nameof(type));
        }
        return InitializerRaw(name, type, dims, raw);
    }

    // ---------------------------------------------------------------- constants

    /// <summary>A Constant node holding <paramref name="value"/>.</summary>
    public string Constant(TensorProto value, string? output = null)
    {
        value.ClearName();
        return One("Constant", [], [Attr.Tensor("value", value)], output);
    }

    /// <summary>A float32 scalar constant.</summary>
    public string Constant(float value, string? output = null) => Constant(TensorData.Create<float>("", [], [value]), output);

    /// <summary>An int64 scalar constant.</summary>
    public string Constant(long value, string? output = null) => Constant(TensorData.Create<long>("", [], [value]), output);

    /// <summary>A 1-D float32 constant.</summary>
    public string Constant(float[] values, string? output = null) => Constant(TensorData.Create<float>("", [values.Length], values), output);

    /// <summary>A 1-D int64 constant.</summary>
    public string Constant(long[] values, string? output = null) => Constant(TensorData.Create<long>("", [values.Length], values), output);

    /// <summary>A constant of <paramref name="type"/> (float32, float16, bfloat16 or double) from float values: a scalar when <paramref name="shape"/> is empty.</summary>
    public string ConstantOf(DT type, ReadOnlySpan<float> values, ReadOnlySpan<long> shape, string? output = null)
    {
        TensorProto t = type switch
        {
            DT.Float => TensorData.Create<float>("", shape, values),
            DT.Float16 => TensorData.Create<Half>("", shape, ToArray(values, v => (Half)v)),
            DT.Bfloat16 => TensorData.Create<BFloat16>("", shape, ToArray(values, BFloat16.FromFloat)),
            DT.Double => TensorData.Create<double>("", shape, ToArray(values, v => (double)v)),
            _ => throw new ArgumentException($"float constants are float, float16, bfloat16 or double, not {DataTypes.Name((int)type)}", nameof(type)),
        };
        return Constant(t, output);
    }

    private static T[] ToArray<T>(ReadOnlySpan<float> values, Func<float, T> convert)
    {
        var result = new T[values.Length];
        for (int i = 0; i < values.Length; i++) result[i] = convert(values[i]);
        return result;
    }

    private string Scalar(DT type, float value) => ConstantOf(type, [value], []);

    // ---------------------------------------------------------------- generic nodes

    /// <summary>
    /// Adds any node: <paramref name="inputs"/> must be defined ("" for an omitted optional input); outputs are named
    /// from <paramref name="outputs"/> where given (entries may be null) and after the node otherwise.
    /// A non-default <paramref name="domain"/> must have been imported with <see cref="ImportOpset"/>.
    /// </summary>
    public string[] Node(string opType, IReadOnlyList<string> inputs, int outputCount = 1, IEnumerable<AttributeProto>? attributes = null,
        string domain = "", IReadOnlyList<string?>? outputs = null)
    {
        CheckOpen();
        if (domain.Length > 0 && !_imports.ContainsKey(domain))
            throw new ArgumentException($"domain '{domain}' is not imported; call ImportOpset first", nameof(domain));
        if (outputs is not null && outputs.Count != outputCount)
            throw new ArgumentException($"{outputs.Count} output names for {outputCount} outputs", nameof(outputs));
        foreach (var i in inputs) if (i.Length > 0) Require(i);

        string nodeName = UniqueName(_scopes.Count == 0 ? opType : $"{ScopePath}/{opType}");
        var node = new NodeProto { OpType = opType, Name = nodeName };
        if (domain.Length > 0) node.Domain = domain;
        node.Input.AddRange(inputs);
        var names = new string[outputCount];
        for (int k = 0; k < outputCount; k++)
        {
            string? explicitName = outputs?[k];
            if (explicitName is not null) Define(explicitName);
            else
            {
                explicitName = UniqueName($"{nodeName}_output_{k}");
                _values.Add(explicitName);
            }
            names[k] = explicitName;
        }
        node.Output.AddRange(names);
        if (attributes is not null) node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
        return names;
    }

    private string One(string opType, IReadOnlyList<string> inputs, IEnumerable<AttributeProto>? attributes = null, string? output = null) =>
        Node(opType, inputs, 1, attributes, "", output is null ? null : [output])[0];

    /// <summary>Any single-input, single-output default-domain operator without attributes (Relu, Abs, Floor, …).</summary>
    public string Unary(string opType, string x, string? output = null) => One(opType, [x], null, output);

    // ---------------------------------------------------------------- elementwise

    public string Add(string a, string b, string? output = null) => One("Add", [a, b], null, output);
    public string Sub(string a, string b, string? output = null) => One("Sub", [a, b], null, output);
    public string Mul(string a, string b, string? output = null) => One("Mul", [a, b], null, output);
    public string Div(string a, string b, string? output = null) => One("Div", [a, b], null, output);
    public string Pow(string a, string b, string? output = null) => One("Pow", [a, b], null, output);
    public string Sqrt(string x, string? output = null) => Unary("Sqrt", x, output);
    public string Sigmoid(string x, string? output = null) => Unary("Sigmoid", x, output);
    public string Erf(string x, string? output = null) => Unary("Erf", x, output);
    public string Tanh(string x, string? output = null) => Unary("Tanh", x, output);
    public string Sin(string x, string? output = null) => Unary("Sin", x, output);
    public string Cos(string x, string? output = null) => Unary("Cos", x, output);
    public string Exp(string x, string? output = null) => Unary("Exp", x, output);
    public string Neg(string x, string? output = null) => Unary("Neg", x, output);
    public string Identity(string x, string? output = null) => Unary("Identity", x, output);
    public string Where(string condition, string x, string y, string? output = null) => One("Where", [condition, x, y], null, output);

    public string Cast(string x, DT to, string? output = null) => One("Cast", [x], [Attr.Int("to", (int)to)], output);

    /// <summary>SiLU (swish) as x·sigmoid(x).</summary>
    public string SiLU(string x, string? output = null) => Mul(x, Sigmoid(x), output);

    /// <summary>GELU decomposed into opset-17 operators (Gelu itself is opset 20); <paramref name="elemType"/> is x's type, for the constants.</summary>
    public string Gelu(string x, GeluApproximation approximate = GeluApproximation.None, DT elemType = DT.Float, string? output = null)
    {
        if (approximate == GeluApproximation.None)
        {
            // Div -> Erf -> Add 1 -> Mul x -> Mul 0.5: the shape ONNX Runtime's Gelu fusion recognises.
            var erf = Erf(Div(x, Scalar(elemType, MathF.Sqrt(2f))));
            var y = Mul(x, Add(erf, Scalar(elemType, 1f)));
            return Mul(y, Scalar(elemType, 0.5f), output);
        }
        var cube = Pow(x, Scalar(elemType, 3f));
        var inner = Mul(Add(x, Mul(cube, Scalar(elemType, 0.044715f))), Scalar(elemType, MathF.Sqrt(2f / MathF.PI)));
        var half = Mul(x, Scalar(elemType, 0.5f));
        return Mul(half, Add(Tanh(inner), Scalar(elemType, 1f)), output);
    }

    // ---------------------------------------------------------------- linear algebra

    /// <summary>Conv. <paramref name="pads"/> is [begin per spatial axis…, end per spatial axis…]; kernel shape is inferred from the weight unless given.</summary>
    public string Conv(string x, string w, string? b = null, long[]? strides = null, long[]? pads = null, long[]? dilations = null,
        long group = 1, long[]? kernelShape = null, string? output = null)
    {
        var attrs = new List<AttributeProto>();
        if (strides is not null) attrs.Add(Attr.Ints("strides", strides));
        if (pads is not null) attrs.Add(Attr.Ints("pads", pads));
        if (dilations is not null) attrs.Add(Attr.Ints("dilations", dilations));
        if (group != 1) attrs.Add(Attr.Int("group", group));
        if (kernelShape is not null) attrs.Add(Attr.Ints("kernel_shape", kernelShape));
        return One("Conv", b is null ? [x, w] : [x, w, b], attrs, output);
    }

    public string MatMul(string a, string b, string? output = null) => One("MatMul", [a, b], null, output);

    /// <summary>Gemm: alpha·op(A)·op(B) + beta·C, op transposing when asked.</summary>
    public string Gemm(string a, string b, string? c = null, float alpha = 1f, float beta = 1f, bool transA = false, bool transB = false, string? output = null)
    {
        var attrs = new List<AttributeProto>();
        if (alpha != 1f) attrs.Add(Attr.Float("alpha", alpha));
        if (beta != 1f) attrs.Add(Attr.Float("beta", beta));
        if (transA) attrs.Add(Attr.Int("transA", 1));
        if (transB) attrs.Add(Attr.Int("transB", 1));
        return One("Gemm", c is null ? [a, b] : [a, b, c], attrs, output);
    }

    public string Einsum(string equation, IReadOnlyList<string> inputs, string? output = null) =>
        One("Einsum", inputs, [Attr.String("equation", equation)], output);

    public string Softmax(string x, long axis = -1, string? output = null) => One("Softmax", [x], [Attr.Int("axis", axis)], output);

    // ---------------------------------------------------------------- shape manipulation

    /// <summary>Reshape to a constant shape; 0 copies the input's dimension (unless <paramref name="allowZero"/>) and -1 is inferred.</summary>
    public string Reshape(string x, long[] shape, bool allowZero = false, string? output = null) => Reshape(x, Constant(shape), allowZero, output);

    /// <summary>Reshape to the int64 shape held in value <paramref name="shape"/>.</summary>
    public string Reshape(string x, string shape, bool allowZero = false, string? output = null) =>
        One("Reshape", [x, shape], allowZero ? [Attr.Int("allowzero", 1)] : null, output);

    public string Transpose(string x, long[]? perm = null, string? output = null) =>
        One("Transpose", [x], perm is null ? null : [Attr.Ints("perm", perm)], output);

    public string Concat(IReadOnlyList<string> inputs, long axis, string? output = null) => One("Concat", inputs, [Attr.Int("axis", axis)], output);

    /// <summary>Splits along <paramref name="axis"/> into pieces of the given sizes.</summary>
    public string[] Split(string x, long axis, long[] sizes, IReadOnlyList<string?>? outputs = null) =>
        Node("Split", [x, Constant(sizes)], sizes.Length, [Attr.Int("axis", axis)], "", outputs);

    /// <summary>Splits along <paramref name="axis"/> into <paramref name="parts"/> equal pieces (the last smaller when it does not divide, opset 18+).</summary>
    public string[] Split(string x, long axis, int parts, IReadOnlyList<string?>? outputs = null)
    {
        if (parts < 1) throw new ArgumentOutOfRangeException(nameof(parts), parts, "at least one part");
        var attrs = new List<AttributeProto> { Attr.Int("axis", axis) };
        if (Opset >= 18) attrs.Add(Attr.Int("num_outputs", parts)); // before 18 the output count alone says how many
        return Node("Split", [x], parts, attrs, "", outputs);
    }

    public string Slice(string x, long[] starts, long[] ends, long[]? axes = null, long[]? steps = null, string? output = null)
    {
        if (starts.Length != ends.Length) throw new ArgumentException("starts and ends differ in length", nameof(ends));
        var inputs = new List<string> { x, Constant(starts), Constant(ends) };
        if (axes is not null || steps is not null) inputs.Add(axes is null ? "" : Constant(axes));
        if (steps is not null) inputs.Add(Constant(steps));
        return One("Slice", inputs, null, output);
    }

    public string Gather(string data, string indices, long axis = 0, string? output = null) =>
        One("Gather", [data, indices], axis == 0 ? null : [Attr.Int("axis", axis)], output);

    public string Unsqueeze(string x, long[] axes, string? output = null) => One("Unsqueeze", [x, Constant(axes)], null, output);

    /// <summary>Squeeze the given axes, or every size-1 axis when <paramref name="axes"/> is null.</summary>
    public string Squeeze(string x, long[]? axes = null, string? output = null) =>
        One("Squeeze", axes is null ? [x] : [x, Constant(axes)], null, output);

    public string Expand(string x, long[] shape, string? output = null) => Expand(x, Constant(shape), output);

    public string Expand(string x, string shape, string? output = null) => One("Expand", [x, shape], null, output);

    /// <summary>The shape of x as a 1-D int64 tensor, optionally only dimensions [start, end).</summary>
    public string Shape(string x, long? start = null, long? end = null, string? output = null)
    {
        var attrs = new List<AttributeProto>();
        if (start is long s) attrs.Add(Attr.Int("start", s));
        if (end is long e) attrs.Add(Attr.Int("end", e));
        return One("Shape", [x], attrs, output);
    }

    /// <summary>Range(start, limit, delta) over scalar values.</summary>
    public string Range(string start, string limit, string delta, string? output = null) => One("Range", [start, limit, delta], null, output);

    // ---------------------------------------------------------------- reductions

    public string ReduceMean(string x, long[] axes, bool keepDims = true, string? output = null) => Reduce("ReduceMean", 18, x, axes, keepDims, output);

    public string ReduceSum(string x, long[] axes, bool keepDims = true, string? output = null) => Reduce("ReduceSum", 13, x, axes, keepDims, output);

    /// <summary>A reduction over <paramref name="axes"/>, given as an attribute before opset <paramref name="axesInputSince"/> and as an input from it.</summary>
    private string Reduce(string opType, int axesInputSince, string x, long[] axes, bool keepDims, string? output)
    {
        var attrs = new List<AttributeProto> { Attr.Int("keepdims", keepDims ? 1 : 0) };
        if (Opset >= axesInputSince) return One(opType, [x, Constant(axes)], attrs, output);
        attrs.Add(Attr.Ints("axes", axes));
        return One(opType, [x], attrs, output);
    }

    // ---------------------------------------------------------------- normalization

    /// <summary>LayerNormalization (opset 17) over axes from <paramref name="axis"/> on.</summary>
    public string LayerNormalization(string x, string scale, string? bias = null, long axis = -1, float epsilon = 1e-5f, string? output = null) =>
        One("LayerNormalization", bias is null ? [x, scale] : [x, scale, bias], [Attr.Int("axis", axis), Attr.Float("epsilon", epsilon)], output);

    public string InstanceNormalization(string x, string scale, string bias, float epsilon = 1e-5f, string? output = null) =>
        One("InstanceNormalization", [x, scale, bias], [Attr.Float("epsilon", epsilon)], output);

    /// <summary>
    /// Group normalization, decomposed because ONNX Runtime's CPU provider has no GroupNormalization kernel:
    /// Reshape [N, C, …] to [N, G, −1] (0 and −1 keep every size dynamic), InstanceNormalization with unit scale and zero
    /// bias over the G groups, Reshape back to x's own shape, then per-channel <paramref name="gamma"/> and <paramref name="beta"/>
    /// (shape [C], unsqueezed over the <paramref name="spatialRank"/> trailing axes). Either may be null for no affine part.
    /// <paramref name="elemType"/> is x's element type, for the constants.
    /// </summary>
    public string GroupNorm(string x, string? gamma, string? beta, long groups = 32, float epsilon = 1e-5f, int spatialRank = 2,
        DT elemType = DT.Float, string? output = null)
    {
        if (groups < 1) throw new ArgumentOutOfRangeException(nameof(groups), groups, "at least one group");
        if (spatialRank < 0) throw new ArgumentOutOfRangeException(nameof(spatialRank), spatialRank, "cannot be negative");
        var grouped = Reshape(x, [0, groups, -1]);
        var ones = ConstantOf(elemType, Enumerable.Repeat(1f, (int)groups).ToArray(), [groups]);
        var zeros = ConstantOf(elemType, new float[groups], [groups]);
        var normalized = InstanceNormalization(grouped, ones, zeros, epsilon);
        bool affine = gamma is not null || beta is not null;
        var y = Reshape(normalized, Shape(x), false, affine ? null : output);
        if (!affine) return y;
        long[] axes = Enumerable.Range(1, spatialRank).Select(a => (long)a).ToArray();
        if (gamma is not null) y = Mul(y, spatialRank == 0 ? gamma : Unsqueeze(gamma, axes), beta is null ? output : null);
        if (beta is not null) y = Add(y, spatialRank == 0 ? beta : Unsqueeze(beta, axes), output);
        return y;
    }

    // ---------------------------------------------------------------- resampling

    /// <summary>Resize by constant per-axis <paramref name="scales"/> (opset 13+ inputs: X, roi omitted, scales).</summary>
    public string Resize(string x, float[] scales, string mode = "nearest", string coordinateTransformationMode = "asymmetric",
        string nearestMode = "floor", string? output = null)
    {
        var attrs = new List<AttributeProto>
        {
            Attr.String("mode", mode),
            Attr.String("coordinate_transformation_mode", coordinateTransformationMode),
        };
        if (mode == "nearest") attrs.Add(Attr.String("nearest_mode", nearestMode));
        return One("Resize", [x, "", Constant(scales)], attrs, output);
    }

    /// <summary>Nearest-neighbour upsampling of the <paramref name="spatialRank"/> trailing axes by <paramref name="factor"/> (SD's 2× upsampler): out[i] = in[floor(i / factor)].</summary>
    public string UpsampleNearest(string x, float factor = 2f, int spatialRank = 2, string? output = null)
    {
        var scales = new float[2 + spatialRank];
        for (int i = 0; i < scales.Length; i++) scales[i] = i < 2 ? 1f : factor;
        return Resize(x, scales, "nearest", "asymmetric", "floor", output);
    }

    // ---------------------------------------------------------------- quantization

    /// <summary>
    /// DequantizeLinear: y = (x − zero_point)·scale. Scale (and zero point) scalar for per-tensor, 1-D along
    /// <paramref name="axis"/> for per-axis, or of x's rank with ceil(D_axis / <paramref name="blockSize"/>) along the axis for blocked (opset 21+).
    /// </summary>
    public string DequantizeLinear(string x, string scale, string? zeroPoint = null, long axis = 1, long blockSize = 0, string? output = null) =>
        One("DequantizeLinear", zeroPoint is null ? [x, scale] : [x, scale, zeroPoint], QuantAttributes(axis, blockSize), output);

    /// <summary>QuantizeLinear: y = saturate(round(x / scale) + zero_point), the output type being the zero point's (uint8 when omitted).</summary>
    public string QuantizeLinear(string x, string scale, string? zeroPoint = null, long axis = 1, long blockSize = 0, string? output = null) =>
        One("QuantizeLinear", zeroPoint is null ? [x, scale] : [x, scale, zeroPoint], QuantAttributes(axis, blockSize), output);

    private List<AttributeProto> QuantAttributes(long axis, long blockSize)
    {
        var attrs = new List<AttributeProto>();
        if (axis != 1) attrs.Add(Attr.Int("axis", axis));
        if (blockSize != 0)
        {
            if (Opset < 21) throw new InvalidOperationException($"blocked quantization (block_size) needs opset 21 or later; this builder writes opset {Opset}");
            if (blockSize < 0) throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "must be positive");
            attrs.Add(Attr.Int("block_size", blockSize));
        }
        return attrs;
    }

    // ---------------------------------------------------------------- build

    /// <summary>
    /// The finished model: IR version for the opset, opset imports, producer "EdgeDiffusion". The model holds the builder's
    /// graph itself (no copy), so the builder is closed afterwards.
    /// </summary>
    public ModelProto Build()
    {
        CheckOpen();
        if (_graph.Output.Count == 0) throw new InvalidOperationException("the graph has no outputs; declare them with Output");
        _built = true;
        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = Producer,
            ProducerVersion = typeof(GraphBuilder).Assembly.GetName().Version?.ToString() ?? "0",
            Graph = _graph,
        };
        foreach (var (domain, version) in _imports)
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = domain, Version = version });
        return model;
    }

    // ---------------------------------------------------------------- internals

    private void CheckOpen()
    {
        if (_built) throw new InvalidOperationException("the model was already built; start a new GraphBuilder");
    }

    private void Define(string name)
    {
        CheckOpen();
        if (string.IsNullOrEmpty(name)) throw new ArgumentException("a value needs a name", nameof(name));
        if (_values.Contains(name)) throw new ArgumentException($"'{name}' is already defined in the graph", nameof(name));
        _names.Add(name);
        _values.Add(name);
    }

    private void Require(string value)
    {
        if (!_values.Contains(value))
            throw new ArgumentException($"'{value}' is not defined yet: declare it with Input or Initializer, or produce it with a node first", nameof(value));
    }

    private static void CheckCount(string name, ReadOnlySpan<long> dims, long count)
    {
        long need = 1;
        foreach (long d in dims) need = d >= 0 ? checked(need * d) : throw new ArgumentException($"initializer '{name}' has a negative dimension", nameof(dims));
        if (need != count) throw new ArgumentException($"initializer '{name}' of shape [{string.Join(",", dims.ToArray())}] needs {need} values, got {count}", nameof(dims));
    }
}
