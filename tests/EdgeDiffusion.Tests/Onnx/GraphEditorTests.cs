using System.Diagnostics;
using EdgeDiffusion.Onnx;
using EdgeDiffusion.Onnx.Protobuf;
using static EdgeDiffusion.Tests.Onnx.OrtRunner;
using DT = EdgeDiffusion.Onnx.Protobuf.TensorProto.Types.DataType;

namespace EdgeDiffusion.Tests.Onnx;

public class GraphEditorTests
{
    private static readonly float[] X = [0.5f, -1f, 2f];

    /// <summary>
    /// x, cond → a = Exp(x); m = Mul(a, x); y = If(cond) { then: Neg(a) } else { Add(a, x) }; out = Add(y, m).
    /// Both branches read values of the main graph.
    /// </summary>
    private static ModelProto IfModel()
    {
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [3]);
        b.Input("cond", DT.Bool, []);
        var a = b.Exp("x", "a");
        var m = b.Mul(a, "x", "m");
        var thenBranch = new GraphProto { Name = "then" };
        thenBranch.Node.Add(Node("Neg", ["a"], ["then_out"], "then_neg"));
        thenBranch.Output.Add(Dim.TensorValueInfo("then_out", DT.Float, [3]));
        var elseBranch = new GraphProto { Name = "else" };
        elseBranch.Node.Add(Node("Add", ["a", "x"], ["else_out"], "else_add"));
        elseBranch.Output.Add(Dim.TensorValueInfo("else_out", DT.Float, [3]));
        var y = b.Node("If", ["cond"], 1, [Attr.Graph("then_branch", thenBranch), Attr.Graph("else_branch", elseBranch)], outputs: ["y"])[0];
        b.Output(b.Add(y, m, "out"), DT.Float, [3]);
        return b.Build();
    }

    private static NodeProto Node(string op, string[] inputs, string[] outputs, string name = "")
    {
        var n = new NodeProto { OpType = op, Name = name };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        return n;
    }

    private static double[] IfExpected(bool cond) => X.Select(v =>
    {
        double a = Math.Exp(v);
        return (cond ? -a : a + v) + a * v;
    }).ToArray();

    private static Dictionary<string, Fetched> RunIf(ModelProto model, bool cond) =>
        Run(model, new Feed("x", [3], X), new Feed("cond", [], new[] { cond }));

    // ------------------------------------------------------------ queries

    [Fact]
    public void ProducersConsumersAndUses_IncludeSubgraphReads()
    {
        var model = IfModel();
        var editor = new GraphEditor(model.Graph);
        var ifNode = model.Graph.Node.Single(n => n.OpType == "If");

        Assert.Equal("Exp", editor.Producer("a")!.OpType);
        Assert.Same(ifNode, editor.Producer("y"));
        Assert.Null(editor.Producer("x"));
        Assert.Null(editor.Producer("nothing"));

        Assert.Equal(["Mul", "If"], editor.Consumers("a").Select(n => n.OpType));
        Assert.Equal(["Exp", "Mul", "If"], editor.Consumers("x").Select(n => n.OpType));
        Assert.Equal(["If"], editor.Consumers("cond").Select(n => n.OpType));
        Assert.Empty(editor.Consumers("out"));
        Assert.Equal(["a", "cond", "x"], editor.Reads(ifNode).Order());

        var uses = editor.Uses("a");
        Assert.Equal(3, uses.Count);
        Assert.Contains(uses, u => u.Node!.OpType == "Mul" && u.Index == 0 && ReferenceEquals(u.Graph, model.Graph));
        Assert.Contains(uses, u => u.Node!.Name == "then_neg" && u.Graph.Name == "then" && u.Index == 0);
        Assert.Contains(uses, u => u.Node!.Name == "else_add" && u.Graph.Name == "else" && u.Index == 0);
        Assert.Contains(editor.Uses("x"), u => u.Node!.Name == "else_add" && u.Index == 1);

        Assert.True(editor.IsGraphInput("x"));
        Assert.True(editor.IsGraphOutput("out"));
        Assert.True(editor.IsDefined("m"));
        Assert.False(editor.IsDefined("then_out")); // a subgraph's value, not this graph's
        Assert.True(editor.IsNameUsed("then_out"));

        AssertClose(IfExpected(true), RunIf(model, true)["out"].Values);
        AssertClose(IfExpected(false), RunIf(model, false)["out"].Values);
    }

    [Fact]
    public void Uses_SkipSubgraphsThatShadowTheName()
    {
        var g = new GraphProto { Name = "main" };
        g.Input.Add(Dim.TensorValueInfo("v", DT.Float, [1]));
        var body = new GraphProto { Name = "body" };
        body.Input.Add(Dim.TensorValueInfo("v", DT.Float, [1])); // shadows the outer v
        body.Node.Add(Node("Neg", ["v"], ["inner"]));
        body.Output.Add(Dim.TensorValueInfo("inner", DT.Float, [1]));
        var passThrough = new GraphProto { Name = "pass" };
        passThrough.Output.Add(Dim.TensorValueInfo("v", DT.Float, [1])); // returns the outer v directly
        var holder = Node("Custom", [], ["r"], "holder");
        holder.Attribute.Add(Attr.Graph("body", body));
        holder.Attribute.Add(Attr.Graph("pass", passThrough));
        g.Node.Add(holder);
        g.Output.Add(Dim.TensorValueInfo("r", DT.Float, [1]));

        var editor = new GraphEditor(g);
        var use = Assert.Single(editor.Uses("v"));
        Assert.Null(use.Node);
        Assert.Equal("pass", use.Graph.Name);
        Assert.Same(holder, Assert.Single(editor.Consumers("v")));

        editor.RenameValue("v", "w");
        Assert.Equal("w", g.Input[0].Name);
        Assert.Equal("w", passThrough.Output[0].Name);
        Assert.Equal("v", body.Input[0].Name);
        Assert.Equal("v", body.Node[0].Input[0]);
    }

    [Fact]
    public void InitializerLookup()
    {
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [2]);
        b.Initializer<float>("w", [2], [1f, 2f]);
        b.Output(b.Mul("x", "w", "y"), DT.Float);
        var editor = new GraphEditor(b.Build().Graph);
        Assert.Equal([1f, 2f], TensorData.Read<float>(editor.FindInitializer("w")!));
        Assert.True(editor.TryGetInitializer("w", out var t));
        Assert.Equal("w", t.Name);
        Assert.True(editor.IsInitializer("w"));
        Assert.Null(editor.FindInitializer("x"));
        Assert.False(editor.TryGetInitializer("y", out _));
    }

    // ------------------------------------------------------------ names

    [Fact]
    public void UniqueName_NeverCollidesWithAnyExistingOrReturnedName()
    {
        var model = IfModel();
        model.Graph.Initializer.Add(TensorData.Create<float>("x_1", [1], [0f]));
        var existing = new HashSet<string>();
        foreach (var g in OnnxGraphs.WithSubgraphs(model.Graph))
        {
            existing.UnionWith(g.Input.Select(v => v.Name));
            existing.UnionWith(g.Output.Select(v => v.Name));
            existing.UnionWith(g.Initializer.Select(t => t.Name));
            foreach (var n in g.Node)
            {
                existing.Add(n.Name);
                existing.UnionWith(n.Output);
            }
        }
        var editor = new GraphEditor(model.Graph);

        Assert.Equal("x_2", editor.UniqueName("x"));
        Assert.Equal("fresh", editor.UniqueName("fresh"));
        Assert.Equal("fresh_1", editor.UniqueName("fresh"));
        Assert.NotEqual("then_out", editor.UniqueName("then_out"));
        Assert.NotEqual("then_neg", editor.UniqueName("then_neg"));
        var hints = new[] { "x", "a", "Exp", "then_out", "fresh", "x_2", "y" };
        var returned = new HashSet<string>();
        for (int i = 0; i < 3000; i++)
        {
            string name = editor.UniqueName(hints[i % hints.Length]);
            Assert.DoesNotContain(name, existing);
            Assert.True(returned.Add(name), $"'{name}' returned twice");
        }
    }

    [Fact]
    public void RenameValue_UpdatesProducerReadersSubgraphsAndOutputs()
    {
        var model = IfModel();
        model.Graph.ValueInfo.Add(Dim.TensorValueInfo("a", DT.Float, [3]));
        var editor = new GraphEditor(model.Graph);
        editor.RenameValue("a", "exp_of_x");
        editor.RenameValue("out", "result");
        editor.RenameValue("x", "input");

        Assert.Equal("Exp", editor.Producer("exp_of_x")!.OpType);
        Assert.Null(editor.Producer("a"));
        Assert.Equal(["Mul", "If"], editor.Consumers("exp_of_x").Select(n => n.OpType));
        Assert.Empty(editor.Consumers("a"));
        Assert.Equal("exp_of_x", model.Graph.ValueInfo[0].Name);
        Assert.Equal("result", model.Graph.Output[0].Name);
        var then = OnnxGraphs.WithSubgraphs(model.Graph).Single(g => g.Name == "then");
        Assert.Equal("exp_of_x", then.Node[0].Input[0]);

        Assert.Throws<ArgumentException>(() => editor.RenameValue("m", "y"));
        Assert.Throws<ArgumentException>(() => editor.RenameValue("m", "then_out"));
        Assert.Throws<ArgumentException>(() => editor.RenameValue("missing", "z"));

        var r = Run(model, new Feed("input", [3], X), new Feed("cond", [], new[] { true }));
        AssertClose(IfExpected(true), r["result"].Values);
        Assert.True(editor.IsTopologicallySorted);
    }

    [Fact]
    public void RenameValue_RenamesInitializers()
    {
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [2]);
        b.Initializer<float>("w", [2], [3f, 4f]);
        b.Output(b.Mul("x", "w", "y"), DT.Float);
        var model = b.Build();
        var editor = new GraphEditor(model.Graph);
        editor.RenameValue("w", "unet.conv_in.weight");
        Assert.Equal("unet.conv_in.weight", model.Graph.Initializer[0].Name);
        Assert.NotNull(editor.FindInitializer("unet.conv_in.weight"));
        Assert.Null(editor.FindInitializer("w"));
        Assert.Equal([3.0, 8.0], Run(model, new Feed("x", [2], new float[] { 1, 2 }))["y"].Values);
    }

    // ------------------------------------------------------------ dead code

    [Fact]
    public void RemoveDeadNodes_KeepsEverythingOutputsNeedAndNothingElse()
    {
        var b = new GraphBuilder();
        var x = b.Input("x", DT.Float, [4]);
        b.Input("unused_input", DT.Float, [4]);
        b.Initializer<float>("w", [4], [1f, 2f, 3f, 4f]);
        b.Initializer<float>("unused", [4], [9f, 9f, 9f, 9f]);
        b.Initializer<float>("dead_w", [4], [5f, 5f, 5f, 5f]);
        var h = b.Mul(x, "w", "h");
        var y = b.Add(h, b.Constant(1f), "y");
        var d1 = b.Exp(h, "d1");                 // dead branch hanging off a live value
        b.Mul(d1, "dead_w", "d2");
        b.Sin(b.Neg(x, "e1"), "e2");             // dead chain from the input
        var z = b.Sqrt(b.Unary("Abs", h), "z");  // second output
        b.Output(y, DT.Float);
        b.Output(z, DT.Float);
        var model = b.Build();
        model.Graph.ValueInfo.Add(Dim.TensorValueInfo("h", DT.Float, [4]));
        model.Graph.ValueInfo.Add(Dim.TensorValueInfo("d1", DT.Float, [4]));
        var feeds = new[] { new Feed("x", [4], new float[] { 1, -2, 3, -4 }), new Feed("unused_input", [4], new float[4]) };
        var before = Run(model, feeds);
        int nodesBefore = model.Graph.Node.Count;

        var editor = new GraphEditor(model.Graph);
        var report = editor.RemoveDeadNodes();

        Assert.Equal(new DeadCodeReport(4, 2), report);
        Assert.Equal(nodesBefore - 4, model.Graph.Node.Count);
        Assert.Equal(["Mul", "Constant", "Add", "Abs", "Sqrt"], model.Graph.Node.Select(n => n.OpType));
        Assert.Equal(["w"], model.Graph.Initializer.Select(t => t.Name));
        Assert.Equal(["x", "unused_input"], model.Graph.Input.Select(v => v.Name));
        Assert.Equal(["h"], model.Graph.ValueInfo.Select(v => v.Name));
        Assert.Null(editor.Producer("d1"));
        Assert.Empty(editor.Consumers("dead_w"));
        Assert.Equal(["Add", "Abs"], editor.Consumers("h").Select(n => n.OpType));

        var after = Run(model, feeds);
        Assert.Equal(before["y"].Values, after["y"].Values);
        Assert.Equal(before["z"].Values, after["z"].Values);
        Assert.Equal(new DeadCodeReport(0, 0), editor.RemoveDeadNodes());
    }

    [Fact]
    public void RemoveDeadNodes_KeepsValuesReadOnlyInsideSubgraphs()
    {
        var model = IfModel();
        var editor = new GraphEditor(model.Graph);
        Assert.Equal(new DeadCodeReport(0, 0), editor.RemoveDeadNodes());
        Assert.Equal(4, model.Graph.Node.Count);
        // Without the Mul reading "a" in the main graph, Exp stays alive through the If branches alone.
        var mul = editor.Producer("m")!;
        editor.ReplaceUses("m", "x");
        Assert.Equal(new DeadCodeReport(1, 0), editor.RemoveDeadNodes());
        Assert.DoesNotContain(mul, model.Graph.Node);
        Assert.Equal("Exp", editor.Producer("a")!.OpType);
        var expected = X.Select(v => -Math.Exp(v) + v).ToArray();
        AssertClose(expected, RunIf(model, true)["out"].Values);
    }

    // ------------------------------------------------------------ replacing initializers

    [Fact]
    public void ReplaceInitializerWithDequantize_PerAxisInt8MatchesFormula()
    {
        const int B = 2, K = 4, N = 3;
        var w = RandomFloats(K * N, 200);
        var bias = RandomFloats(N, 201);
        var x = RandomFloats(B * K, 202);
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [B, K]);
        b.Initializer<float>("linear.weight", [K, N], w);
        b.Initializer<float>("linear.bias", [N], bias);
        b.Output(b.Add(b.MatMul("x", "linear.weight"), "linear.bias", "y"), DT.Float);
        var model = b.Build();

        // Asymmetric int8 per output column (axis 1), computed here from the definition.
        var scale = new float[N];
        var zp = new sbyte[N];
        var q = new sbyte[K * N];
        for (int c = 0; c < N; c++)
        {
            float lo = Math.Min(0, Enumerable.Range(0, K).Min(r => w[r * N + c]));
            float hi = Math.Max(0, Enumerable.Range(0, K).Max(r => w[r * N + c]));
            scale[c] = (hi - lo) / 255f;
            zp[c] = (sbyte)Math.Clamp(Math.Round(-128 - lo / scale[c]), -128, 127);
            for (int r = 0; r < K; r++) q[r * N + c] = (sbyte)Math.Clamp(Math.Round(w[r * N + c] / scale[c]) + zp[c], -128, 127);
        }

        var editor = new GraphEditor(model.Graph);
        var dq = editor.ReplaceInitializerWithDequantize("linear.weight",
            TensorData.Create<sbyte>("", [K, N], q), TensorData.Create<float>("", [N], scale), TensorData.Create<sbyte>("", [N], zp), axis: 1);

        Assert.Null(editor.FindInitializer("linear.weight"));
        Assert.Same(dq, editor.Producer("linear.weight"));
        Assert.Same(dq, model.Graph.Node[0]);
        Assert.Equal(["linear.weight_quantized", "linear.weight_scale", "linear.weight_zero_point"], dq.Input);
        Assert.Equal(["linear.bias", "linear.weight_quantized", "linear.weight_scale", "linear.weight_zero_point"],
            model.Graph.Initializer.Select(t => t.Name));
        Assert.Null(editor.FindOrderViolation());

        var y = Run(model, new Feed("x", [B, K], x))["y"];
        var expected = new double[B * N];
        for (int i = 0; i < B; i++)
        for (int c = 0; c < N; c++)
        {
            double s = bias[c];
            for (int r = 0; r < K; r++) s += (double)x[i * K + r] * (scale[c] * (q[r * N + c] - zp[c]));
            expected[i * N + c] = s;
        }
        AssertClose(expected, y.Values, 1e-5);
        // The dequantized weight really differs from the float one: the graph no longer computes with w.
        Assert.Contains(Enumerable.Range(0, K * N), i => Math.Abs(w[i] - scale[i % N] * (q[i] - zp[i % N])) > 1e-7);
    }

    [Fact]
    public void ReplaceInitializerWithDequantize_BlockedInt4Opset21()
    {
        const int K = 6, N = 2, Block = 4, Blocks = 2; // blocks along K (axis 0), the last one partial
        var x = RandomFloats(K, 210);
        var random = new Random(211);
        var q = Enumerable.Range(0, K * N).Select(_ => random.Next(-8, 8)).ToArray();
        var scale = new float[] { 0.1f, 0.2f, 0.05f, 0.4f };
        var b = new GraphBuilder(21);
        b.Input("x", DT.Float, [1, K]);
        b.Initializer<float>("w", [K, N], new float[K * N]);
        b.Output(b.MatMul("x", "w", "y"), DT.Float);
        var model = b.Build();

        var editor = new GraphEditor(model.Graph);
        var packed = new byte[(K * N + 1) / 2];
        SubByte.Pack4(q, packed, signed: true);
        var qt = new TensorProto { DataType = (int)DT.Int4, RawData = Google.Protobuf.ByteString.CopyFrom(packed) };
        qt.Dims.AddRange([K, N]);
        editor.ReplaceInitializerWithDequantize("w", qt, TensorData.Create<float>("", [Blocks, N], scale), axis: 0, blockSize: Block);

        var y = Run(model, new Feed("x", [1, K], x))["y"];
        var expected = new double[N];
        for (int c = 0; c < N; c++)
            for (int r = 0; r < K; r++) expected[c] += (double)x[r] * scale[r / Block * N + c] * q[r * N + c];
        AssertClose(expected, y.Values, 1e-5);
    }

    [Fact]
    public void ReplaceInitializer_ReordersWhenTheSubgraphReadsALaterNode()
    {
        // p = Mul(x, w) comes before e = Exp(x); w is replaced by Mul(e, 2), which must move ahead of p.
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [3]);
        b.Initializer<float>("w", [3], [1f, 1f, 1f]);
        b.Initializer<float>("two", [], [2f]);
        var p = b.Mul("x", "w", "p");
        var e = b.Exp("x", "e");
        b.Output(b.Add(p, e, "y"), DT.Float);
        var model = b.Build();
        var editor = new GraphEditor(model.Graph);

        var computeW = Node("Mul", [e, "two"], ["w"]);
        editor.ReplaceInitializer("w", [computeW]);

        Assert.Null(editor.FindOrderViolation());
        Assert.False(string.IsNullOrEmpty(computeW.Name));
        var y = Run(model, new Feed("x", [3], X))["y"];
        AssertClose(X.Select(v => v * Math.Exp(v) * 2 + Math.Exp(v)).ToArray(), y.Values);

        Assert.Throws<ArgumentException>(() => editor.ReplaceInitializer("two", [Node("Identity", ["x"], ["not_two"])]));
        Assert.Throws<ArgumentException>(() => editor.ReplaceInitializer("missing", [Node("Identity", ["x"], ["missing"])]));
        int nodes = model.Graph.Node.Count;
        Assert.Throws<ArgumentException>(() => editor.ReplaceInitializer("two", [Node("Identity", ["x"], ["two"])],
            [TensorData.Create<float>("e", [1], [0f])])); // "e" is taken: nothing may change
        Assert.NotNull(editor.FindInitializer("two"));
        Assert.Equal(nodes, model.Graph.Node.Count);
    }

    // ------------------------------------------------------------ adding nodes

    [Fact]
    public void AddNode_LandsRightAfterItsInputsAndReplaceUsesRewires()
    {
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [3]);
        var y = b.Exp("x", "y");
        var one = b.Constant(1f);
        b.Output(b.Add(y, one, "z"), DT.Float);
        b.Output(b.Identity(y, "y_out"), DT.Float);
        var model = b.Build();
        var editor = new GraphEditor(model.Graph);

        var neg = editor.AddNode("Neg", [y], [editor.UniqueName("y_neg")]);
        Assert.Equal(1, model.Graph.Node.IndexOf(neg)); // just after Exp, before its readers
        Assert.Equal("Neg", neg.Name);
        int rewired = editor.ReplaceUses(y, neg.Output[0], except: [neg, editor.Producer("y_out")!]);
        Assert.Equal(1, rewired);
        Assert.Equal(["Add"], editor.Consumers("y_neg").Select(n => n.OpType));
        Assert.Equal(["Identity", "Neg"], editor.Consumers("y").Select(n => n.OpType).Order());
        Assert.Null(editor.FindOrderViolation());

        var r = Run(model, new Feed("x", [3], X));
        AssertClose(X.Select(v => -Math.Exp(v) + 1).ToArray(), r["z"].Values);
        AssertClose(X.Select(v => Math.Exp(v)).ToArray(), r["y_out"].Values);

        Assert.Throws<ArgumentException>(() => editor.AddNode("Neg", ["x"], ["z"]));
        Assert.Throws<ArgumentException>(() => editor.AddInitializer(TensorData.Create<float>("x", [1], [0f])));
    }

    [Fact]
    public void AddNodes_BatchKeepsItsOwnOrder()
    {
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [3]);
        var y = b.Exp("x", "y");
        b.Output(b.Neg(y, "z"), DT.Float);
        var model = b.Build();
        var editor = new GraphEditor(model.Graph);
        var first = Node("Sin", ["x"], ["s1"]);
        var second = Node("Add", ["s1", "y"], ["s2"]);
        editor.AddNodes([first, second]);
        var names = model.Graph.Node.Select(n => n.OpType).ToArray();
        Assert.Equal(["Sin", "Exp", "Add", "Neg"], names);
        Assert.Null(editor.FindOrderViolation());
    }

    // ------------------------------------------------------------ topological order

    [Fact]
    public void FindOrderViolation_DetectsMisorderedGraphAndSortFixesIt()
    {
        var b = new GraphBuilder();
        b.Input("x", DT.Float, [3]);
        var a = b.Exp("x", "a");
        var s = b.Sin(a, "s");
        var c = b.Cos("x", "c");
        b.Output(b.Add(s, c, "y"), DT.Float);
        var model = b.Build();
        var expected = Run(model, new Feed("x", [3], X))["y"].Values;
        var sortedOrder = model.Graph.Node.Select(n => n.Name).ToArray();

        // Move Sin (reads a) ahead of Exp (produces a).
        var nodes = model.Graph.Node.ToList();
        (nodes[0], nodes[1]) = (nodes[1], nodes[0]);
        model.Graph.Node.Clear();
        model.Graph.Node.AddRange(nodes);
        var editor = new GraphEditor(model.Graph);

        var violation = editor.FindOrderViolation();
        Assert.NotNull(violation);
        Assert.Equal("Sin", violation.Node.OpType);
        Assert.Equal(0, violation.NodeIndex);
        Assert.Equal("a", violation.Value);
        Assert.True(violation.ProducedLater);
        Assert.False(editor.IsTopologicallySorted);

        editor.SortTopologically();
        Assert.True(editor.IsTopologicallySorted);
        Assert.Equal(sortedOrder, model.Graph.Node.Select(n => n.Name));
        Assert.Equal(expected, Run(model, new Feed("x", [3], X))["y"].Values);

        // Sorting a sorted graph changes nothing.
        editor.SortTopologically();
        Assert.Equal(sortedOrder, model.Graph.Node.Select(n => n.Name));
    }

    [Fact]
    public void FindOrderViolation_ReportsReadsOfUndefinedValues_SortRefusesThemAndCycles()
    {
        var g = new GraphProto { Name = "g" };
        g.Input.Add(Dim.TensorValueInfo("x", DT.Float, [1]));
        g.Node.Add(Node("Neg", ["x"], ["n"], "neg"));
        g.Node.Add(Node("Add", ["n", "ghost"], ["y"], "add"));
        g.Output.Add(Dim.TensorValueInfo("y", DT.Float, [1]));
        var editor = new GraphEditor(g);
        var violation = editor.FindOrderViolation()!;
        Assert.Equal("add", violation.Node.Name);
        Assert.Equal("ghost", violation.Value);
        Assert.False(violation.ProducedLater);
        var e = Assert.Throws<OnnxFormatException>(editor.SortTopologically);
        Assert.Contains("ghost", e.Message);

        var cyclic = new GraphProto { Name = "cyclic" };
        cyclic.Input.Add(Dim.TensorValueInfo("x", DT.Float, [1]));
        cyclic.Node.Add(Node("Add", ["x", "q"], ["p"], "p_node"));
        cyclic.Node.Add(Node("Neg", ["p"], ["q"], "q_node"));
        cyclic.Output.Add(Dim.TensorValueInfo("q", DT.Float, [1]));
        var cycleEditor = new GraphEditor(cyclic);
        Assert.NotNull(cycleEditor.FindOrderViolation());
        Assert.Contains("cycle", Assert.Throws<OnnxFormatException>(cycleEditor.SortTopologically).Message);
    }

    [Fact]
    public void DuplicateProducersAreRejected()
    {
        var g = new GraphProto { Name = "g" };
        g.Node.Add(Node("Constant", [], ["v"], "c1"));
        g.Node.Add(Node("Constant", [], ["v"], "c2"));
        Assert.Throws<OnnxFormatException>(() => new GraphEditor(g));
    }

    // ------------------------------------------------------------ scale

    [Fact]
    public void LargeGraphs_AreIndexedSortedAndPruned()
    {
        const int Count = 20_000;
        var g = new GraphProto { Name = "big" };
        g.Input.Add(Dim.TensorValueInfo("v0", DT.Float, [1]));
        g.Initializer.Add(TensorData.Create<float>("c", [1], [1f]));
        for (int i = 1; i <= Count; i++)
        {
            g.Node.Add(Node("Add", [$"v{i - 1}", "c"], [$"v{i}"], $"add{i}"));
            if (i % 10 == 0) g.Node.Add(Node("Neg", [$"v{i}"], [$"dead{i}"], $"neg{i}"));
        }
        g.Output.Add(Dim.TensorValueInfo($"v{Count}", DT.Float, [1]));
        var reversed = g.Node.Reverse().ToList();
        g.Node.Clear();
        g.Node.AddRange(reversed);

        var editor = new GraphEditor(g);
        Assert.Equal(Count, editor.Consumers("c").Count);
        for (int i = 0; i < Count; i++) Assert.Single(editor.Producer($"v{i + 1}")!.Output);
        for (int i = 0; i < Count; i++) editor.UniqueName("v1");
        Assert.NotNull(editor.FindOrderViolation());
        editor.SortTopologically();
        Assert.Null(editor.FindOrderViolation());
        Assert.Equal("add1", g.Node[0].Name);
        var report = editor.RemoveDeadNodes();
        for (int i = 0; i < 200; i++) editor.AddNode("Identity", [$"v{i * 50}"], [editor.UniqueName("probe")]);
        editor.RenameValue("v10", "ten");

        Assert.Equal(new DeadCodeReport(Count / 10, 0), report);
        Assert.Null(editor.FindOrderViolation());
        Assert.Equal("ten", g.Node.Single(n => n.Name == "add11").Input[0]);
    }
}
