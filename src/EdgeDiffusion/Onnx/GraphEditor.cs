using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Onnx;

/// <summary>One place a value is read: input <see cref="Index"/> of <see cref="Node"/> in <see cref="Graph"/> (the edited
/// graph or a subgraph nested in one of its nodes). <see cref="Node"/> is null when a subgraph lists the value as one of its
/// outputs, <see cref="Index"/> then being the output's position.</summary>
public readonly record struct ValueUse(GraphProto Graph, NodeProto? Node, int Index);

/// <summary>The first node (at <see cref="NodeIndex"/>) that reads <see cref="Value"/> before it is defined.
/// <see cref="ProducedLater"/> is true when a later node produces it, false when nothing in the graph does.</summary>
public sealed record OrderViolation(NodeProto Node, int NodeIndex, string Value, bool ProducedLater);

/// <summary>What <see cref="GraphEditor.RemoveDeadNodes"/> removed.</summary>
public readonly record struct DeadCodeReport(int NodesRemoved, int InitializersRemoved);

/// <summary>
/// Queries and edits one graph (the main graph of a model, usually) through index maps built once: producers and consumers
/// of every value, initializers by name, and every name in use. Edits made through the editor keep the maps up to date;
/// after changing the graph by other means call <see cref="Reindex"/>.
/// <para>Values read inside subgraphs (If branches, Loop/Scan bodies) from the edited graph count as read by the node that
/// holds the subgraph, and renames reach into subgraphs. Initializers of subgraphs are not indexed.</para>
/// <para>Lookups are O(1); single edits cost O(nodes) at most (one pass over the node list), batch edits one pass in all.</para>
/// <para>The graph is treated as a main graph: every value it reads must be defined in it (editing a subgraph that reads
/// outer values works, but <see cref="FindOrderViolation"/> reports those reads).</para>
/// </summary>
public sealed class GraphEditor
{
    private readonly Dictionary<string, NodeProto> _producer = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<NodeProto>> _consumers = new(StringComparer.Ordinal);
    private readonly Dictionary<NodeProto, string[]> _reads = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<string, TensorProto> _initializers = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _nameCounters = new(StringComparer.Ordinal);

    public GraphEditor(GraphProto graph)
    {
        Graph = graph ?? throw new ArgumentNullException(nameof(graph));
        Reindex();
    }

    public GraphProto Graph { get; }

    /// <summary>Rebuilds every index from the graph; needed only after the graph was changed other than through this editor.</summary>
    public void Reindex()
    {
        _producer.Clear();
        _consumers.Clear();
        _reads.Clear();
        _initializers.Clear();
        _used.Clear();
        foreach (var g in OnnxGraphs.WithSubgraphs(Graph))
        {
            foreach (var v in g.Input) _used.Add(v.Name);
            foreach (var v in g.Output) _used.Add(v.Name);
            foreach (var v in g.ValueInfo) _used.Add(v.Name);
            foreach (var t in g.Initializer) _used.Add(t.Name);
            foreach (var s in g.SparseInitializer) if (s.Values is not null) _used.Add(s.Values.Name);
            foreach (var n in g.Node)
            {
                if (n.HasName) _used.Add(n.Name);
                foreach (var o in n.Output) if (o.Length > 0) _used.Add(o);
                foreach (var i in n.Input) if (i.Length > 0) _used.Add(i);
            }
        }
        foreach (var t in Graph.Initializer) _initializers.TryAdd(t.Name, t);
        foreach (var s in Graph.SparseInitializer) if (s.Values is not null) _initializers.TryAdd(s.Values.Name, s.Values);
        foreach (var node in Graph.Node) Register(node);
    }

    // ---------------------------------------------------------------- queries

    /// <summary>The node of this graph that produces <paramref name="value"/>; null for graph inputs, initializers and unknown names.</summary>
    public NodeProto? Producer(string value) => _producer.GetValueOrDefault(value);

    /// <summary>
    /// Nodes of this graph that read <paramref name="value"/>, directly or from inside one of their subgraphs; each node once,
    /// in graph order as indexed (nodes the editor added or rewired since come last).
    /// </summary>
    public IReadOnlyList<NodeProto> Consumers(string value) =>
        _consumers.TryGetValue(value, out var list) ? list.ToArray() : [];

    /// <summary>Every place <paramref name="value"/> is read, down to the nodes inside subgraphs that read it from this graph.</summary>
    public IReadOnlyList<ValueUse> Uses(string value)
    {
        var uses = new List<ValueUse>();
        if (!_consumers.TryGetValue(value, out var consumers)) return uses;
        foreach (var node in consumers)
        {
            for (int i = 0; i < node.Input.Count; i++)
                if (node.Input[i] == value) uses.Add(new ValueUse(Graph, node, i));
            foreach (var sub in OnnxGraphs.Subgraphs(node)) CollectNestedUses(sub, value, uses);
        }
        return uses;
    }

    /// <summary>The initializer of this graph named <paramref name="name"/>, or null (sparse initializers: their values tensor).</summary>
    public TensorProto? FindInitializer(string name) => _initializers.GetValueOrDefault(name);

    public bool TryGetInitializer(string name, out TensorProto tensor) => _initializers.TryGetValue(name, out tensor!);

    public bool IsInitializer(string name) => _initializers.ContainsKey(name);

    public bool IsGraphInput(string name) => Graph.Input.Any(v => v.Name == name);

    public bool IsGraphOutput(string name) => Graph.Output.Any(v => v.Name == name);

    /// <summary>Whether <paramref name="value"/> is defined in this graph: a graph input, an initializer or a node output.</summary>
    public bool IsDefined(string value) => _producer.ContainsKey(value) || _initializers.ContainsKey(value) || IsGraphInput(value);

    /// <summary>Whether <paramref name="name"/> is taken anywhere in the graph or its subgraphs, as a value, node or initializer name.</summary>
    public bool IsNameUsed(string name) => _used.Contains(name);

    /// <summary>
    /// A name no value, node or initializer of the graph (or its subgraphs) has, and that no earlier call returned:
    /// <paramref name="hint"/> itself when free, else hint_1, hint_2, … The name is reserved at once.
    /// </summary>
    public string UniqueName(string hint)
    {
        if (string.IsNullOrEmpty(hint)) hint = "value";
        if (_used.Add(hint)) return hint;
        int k = _nameCounters.GetValueOrDefault(hint, 1);
        string candidate;
        do candidate = $"{hint}_{k++}"; while (!_used.Add(candidate));
        _nameCounters[hint] = k;
        return candidate;
    }

    /// <summary>The values <paramref name="node"/> reads: its non-empty inputs and the names its subgraphs take from outside them.</summary>
    public IReadOnlyList<string> Reads(NodeProto node) =>
        _reads.TryGetValue(node, out var reads) ? reads : ComputeReads(node);

    // ---------------------------------------------------------------- adding

    /// <summary>Adds <paramref name="tensor"/> as an initializer. Its name must be free (see <see cref="UniqueName"/>).</summary>
    public TensorProto AddInitializer(TensorProto tensor)
    {
        if (string.IsNullOrEmpty(tensor.Name)) throw new ArgumentException("an initializer needs a name", nameof(tensor));
        if (IsDefined(tensor.Name)) throw new ArgumentException($"'{tensor.Name}' is already defined in graph '{Graph.Name}'", nameof(tensor));
        Graph.Initializer.Add(tensor);
        _initializers[tensor.Name] = tensor;
        _used.Add(tensor.Name);
        return tensor;
    }

    /// <summary>Creates and adds a node (see <see cref="AddNodes"/> for where it goes); an empty name becomes a unique one from the op type.</summary>
    public NodeProto AddNode(string opType, IEnumerable<string> inputs, IEnumerable<string> outputs,
        IEnumerable<AttributeProto>? attributes = null, string? name = null, string domain = "")
    {
        var node = new NodeProto { OpType = opType, Name = name ?? "" };
        if (domain.Length > 0) node.Domain = domain;
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        if (attributes is not null) node.Attribute.AddRange(attributes);
        AddNodes([node]);
        return node;
    }

    public NodeProto AddNode(NodeProto node)
    {
        AddNodes([node]);
        return node;
    }

    /// <summary>
    /// Adds nodes, each placed at the earliest position that keeps the graph in topological order: just after the last
    /// node producing one of its inputs (so rewiring existing consumers to a new node's output stays ordered). The batch
    /// must be in order itself (a node after the nodes it reads from). Outputs must not already be defined; nodes without a
    /// name get a unique one. Costs at most one pass over the node list for the whole batch, so add many nodes in one call.
    /// </summary>
    public void AddNodes(IReadOnlyList<NodeProto> nodes)
    {
        if (nodes.Count == 0) return;
        var newOutputs = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in nodes)
        {
            if (string.IsNullOrEmpty(node.OpType)) throw new ArgumentException("a node needs an op_type", nameof(nodes));
            foreach (var o in node.Output)
            {
                if (o.Length == 0) continue;
                if (IsDefined(o) || !newOutputs.Add(o))
                    throw new ArgumentException($"node {node.OpType} outputs '{o}', which is already defined in graph '{Graph.Name}'", nameof(nodes));
            }
        }

        // Positions of the existing nodes the batch reads from: one pass over the node list.
        var position = new Dictionary<NodeProto, int>(ReferenceEqualityComparer.Instance);
        var batchReads = nodes.Select(ComputeReads).ToArray();
        foreach (var reads in batchReads)
            foreach (var read in reads)
                if (!newOutputs.Contains(read) && _producer.TryGetValue(read, out var p)) position[p] = -1;
        // From the end, stopping once all are found: inserting after recent nodes is cheap.
        for (int i = Graph.Node.Count - 1, missing = position.Count; i >= 0 && missing > 0; i--)
        {
            var n = Graph.Node[i];
            if (position.TryGetValue(n, out int at) && at < 0)
            {
                position[n] = i;
                missing--;
            }
        }

        var slotOfNew = new Dictionary<string, int>(StringComparer.Ordinal);
        var slots = new int[nodes.Count];
        for (int k = 0; k < nodes.Count; k++)
        {
            int slot = 0;
            foreach (var read in batchReads[k])
            {
                if (slotOfNew.TryGetValue(read, out int s)) slot = Math.Max(slot, s);
                else if (_producer.TryGetValue(read, out var p)) slot = Math.Max(slot, position[p] + 1);
            }
            slots[k] = slot;
            foreach (var o in nodes[k].Output) if (o.Length > 0) slotOfNew[o] = slot;
        }

        var order = Enumerable.Range(0, nodes.Count).OrderBy(k => slots[k]).ToArray(); // stable: batch order within a slot
        if (nodes.Count <= 16)
        {
            // A few inserts (each a block move) beat rebuilding the list; last first so earlier slots stay valid.
            for (int j = order.Length - 1; j >= 0; j--) Graph.Node.Insert(slots[order[j]], nodes[order[j]]);
        }
        else
        {
            var merged = new List<NodeProto>(Graph.Node.Count + nodes.Count);
            int next = 0;
            for (int i = 0; i <= Graph.Node.Count; i++)
            {
                while (next < order.Length && slots[order[next]] == i) merged.Add(nodes[order[next++]]);
                if (i < Graph.Node.Count) merged.Add(Graph.Node[i]);
            }
            Graph.Node.Clear();
            Graph.Node.AddRange(merged);
        }

        foreach (var node in nodes)
        {
            if (string.IsNullOrEmpty(node.Name)) node.Name = UniqueName(node.OpType);
            else _used.Add(node.Name);
            foreach (var o in node.Output) if (o.Length > 0) _used.Add(o);
            Register(node);
        }
    }

    // ---------------------------------------------------------------- removing

    /// <summary>Removes nodes (by reference) in one pass. Values they produced become undefined; their readers are not touched.</summary>
    public int RemoveNodes(IEnumerable<NodeProto> nodes)
    {
        var doomed = new HashSet<NodeProto>(nodes, ReferenceEqualityComparer.Instance);
        if (doomed.Count == 0) return 0;
        var kept = new List<NodeProto>(Graph.Node.Count);
        int removed = 0;
        foreach (var n in Graph.Node)
        {
            if (doomed.Contains(n)) removed++;
            else kept.Add(n);
        }
        if (removed == 0) return 0;
        Graph.Node.Clear();
        Graph.Node.AddRange(kept);

        var touched = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in doomed)
        {
            if (!_reads.Remove(node, out var reads)) continue;
            foreach (var o in node.Output)
                if (_producer.TryGetValue(o, out var p) && ReferenceEquals(p, node)) _producer.Remove(o);
            touched.UnionWith(reads);
        }
        foreach (var value in touched)
        {
            if (!_consumers.TryGetValue(value, out var list)) continue;
            list.RemoveAll(doomed.Contains);
            if (list.Count == 0) _consumers.Remove(value);
        }
        return removed;
    }

    /// <summary>Removes the initializer named <paramref name="name"/>; false when there is none.</summary>
    public bool RemoveInitializer(string name) => RemoveInitializers([name]) > 0;

    /// <summary>Removes initializers (dense and sparse) by name in one pass over the initializer lists.</summary>
    public int RemoveInitializers(IEnumerable<string> names)
    {
        var doomed = new HashSet<string>(names, StringComparer.Ordinal);
        doomed.IntersectWith(_initializers.Keys);
        if (doomed.Count == 0) return 0;
        int removed = RemoveWhere(Graph.Initializer, t => doomed.Contains(t.Name));
        removed += RemoveWhere(Graph.SparseInitializer, s => s.Values is not null && doomed.Contains(s.Values.Name));
        foreach (var name in doomed) _initializers.Remove(name);
        return removed;
    }

    /// <summary>
    /// Removes nodes none of whose outputs reach a graph output (transitively, reads from subgraphs included) and
    /// initializers nothing live reads. Graph inputs are kept (they are the model's interface), as are initializers that are
    /// also graph inputs; value_info entries for removed values go too.
    /// </summary>
    public DeadCodeReport RemoveDeadNodes()
    {
        var liveValues = new HashSet<string>(StringComparer.Ordinal);
        var liveNodes = new HashSet<NodeProto>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<string>();
        foreach (var o in Graph.Output) stack.Push(o.Name);
        while (stack.Count > 0)
        {
            string v = stack.Pop();
            if (!liveValues.Add(v)) continue;
            if (_producer.TryGetValue(v, out var node) && liveNodes.Add(node))
                foreach (var read in _reads[node]) stack.Push(read);
        }

        var deadNodes = Graph.Node.Where(n => !liveNodes.Contains(n)).ToList();
        int nodesRemoved = RemoveNodes(deadNodes);

        var graphInputs = new HashSet<string>(Graph.Input.Select(v => v.Name), StringComparer.Ordinal);
        var deadInitializers = _initializers.Keys.Where(n => !liveValues.Contains(n) && !graphInputs.Contains(n)).ToList();
        int initializersRemoved = RemoveInitializers(deadInitializers);

        if (nodesRemoved > 0 || initializersRemoved > 0)
            RemoveWhere(Graph.ValueInfo, v => !IsDefined(v.Name));
        return new DeadCodeReport(nodesRemoved, initializersRemoved);
    }

    // ---------------------------------------------------------------- replacing

    /// <summary>
    /// Replaces initializer <paramref name="name"/> by a subgraph computing it: the initializer goes, <paramref name="initializers"/>
    /// (with free names) and <paramref name="nodes"/> come in, and exactly one of the nodes must output <paramref name="name"/>,
    /// so every reader now reads the computed value. Nodes are placed as <see cref="AddNodes"/> places them.
    /// </summary>
    public void ReplaceInitializer(string name, IReadOnlyList<NodeProto> nodes, IReadOnlyList<TensorProto>? initializers = null)
    {
        if (!_initializers.ContainsKey(name)) throw new ArgumentException($"graph '{Graph.Name}' has no initializer '{name}'", nameof(name));
        if (IsGraphInput(name)) throw new ArgumentException($"initializer '{name}' is also a graph input (a default value callers may override); it cannot be replaced by nodes", nameof(name));
        int producers = nodes.Sum(n => n.Output.Count(o => o == name));
        if (producers != 1) throw new ArgumentException($"exactly one of the replacement nodes must output '{name}'; {producers} do", nameof(nodes));

        // Check everything before changing anything, so a bad replacement leaves the graph as it was.
        var fresh = new HashSet<string>(StringComparer.Ordinal) { name };
        foreach (var t in initializers ?? [])
            if (string.IsNullOrEmpty(t.Name) || IsDefined(t.Name) || !fresh.Add(t.Name))
                throw new ArgumentException($"replacement initializer '{t.Name}' needs a free name (see UniqueName)", nameof(initializers));
        foreach (var o in nodes.SelectMany(n => n.Output))
            if (o.Length > 0 && o != name && (IsDefined(o) || !fresh.Add(o)))
                throw new ArgumentException($"replacement node output '{o}' is already defined", nameof(nodes));

        RemoveInitializers([name]);
        foreach (var t in initializers ?? []) AddInitializer(t);
        AddNodes(nodes);

        // Nodes reading other node outputs may have landed after a reader of the replaced value: restore order if so.
        var producer = _producer[name];
        var position = Positions();
        if (_consumers.TryGetValue(name, out var readers) && readers.Any(r => position[r] < position[producer]))
            SortTopologically();
    }

    /// <summary>
    /// Replaces initializer <paramref name="name"/> by DequantizeLinear(<paramref name="quantized"/>, <paramref name="scale"/>,
    /// <paramref name="zeroPoint"/>), so readers see scale·(q − zero_point). The tensors are added as initializers named
    /// name_quantized, name_scale and name_zero_point (made unique if taken). <paramref name="blockSize"/> &gt; 0 is blocked
    /// quantization along <paramref name="axis"/> (opset 21+). Returns the DequantizeLinear node.
    /// </summary>
    public NodeProto ReplaceInitializerWithDequantize(string name, TensorProto quantized, TensorProto scale, TensorProto? zeroPoint = null,
        long axis = 1, long blockSize = 0)
    {
        if (!_initializers.ContainsKey(name)) throw new ArgumentException($"graph '{Graph.Name}' has no initializer '{name}'", nameof(name));
        quantized.Name = UniqueName(name + "_quantized");
        scale.Name = UniqueName(name + "_scale");
        if (zeroPoint is not null) zeroPoint.Name = UniqueName(name + "_zero_point");
        var node = new NodeProto { OpType = "DequantizeLinear", Name = UniqueName(name + "_DequantizeLinear") };
        node.Input.Add(quantized.Name);
        node.Input.Add(scale.Name);
        if (zeroPoint is not null) node.Input.Add(zeroPoint.Name);
        node.Output.Add(name);
        if (axis != 1) node.Attribute.Add(Attr.Int("axis", axis));
        if (blockSize != 0) node.Attribute.Add(Attr.Int("block_size", blockSize));
        var tensors = new List<TensorProto> { quantized, scale };
        if (zeroPoint is not null) tensors.Add(zeroPoint);
        ReplaceInitializer(name, [node], tensors);
        return node;
    }

    /// <summary>
    /// Makes every node that reads <paramref name="value"/> (also from inside subgraphs) read <paramref name="replacement"/>
    /// instead; nodes in <paramref name="except"/> keep reading the old value. Graph outputs are not changed.
    /// </summary>
    public int ReplaceUses(string value, string replacement, IEnumerable<NodeProto>? except = null)
    {
        if (value == replacement) return 0;
        var skip = new HashSet<NodeProto>(except ?? [], ReferenceEqualityComparer.Instance);
        var readers = Consumers(value).Where(n => !skip.Contains(n)).ToList();
        int replaced = 0;
        foreach (var node in readers)
        {
            foreach (var use in UsesIn(node, value))
            {
                if (use.Node is null) use.Graph.Output[use.Index].Name = replacement;
                else use.Node.Input[use.Index] = replacement;
                replaced++;
            }
            Unregister(node);
            Register(node);
        }
        return replaced;
    }

    /// <summary>
    /// Renames a value of this graph everywhere: its producer (node output, initializer or graph input), every reader
    /// (subgraphs included), graph outputs, value_info and quantization annotations. The new name must be unused.
    /// </summary>
    public void RenameValue(string oldName, string newName)
    {
        if (oldName == newName) return;
        if (string.IsNullOrEmpty(newName)) throw new ArgumentException("the new name is empty", nameof(newName));
        if (!IsDefined(oldName)) throw new ArgumentException($"graph '{Graph.Name}' defines no value '{oldName}'", nameof(oldName));
        if (_used.Contains(newName)) throw new ArgumentException($"'{newName}' is already used in graph '{Graph.Name}'", nameof(newName));

        var readers = _consumers.TryGetValue(oldName, out var list) ? list.ToList() : [];
        foreach (var node in readers)
        {
            foreach (var use in UsesIn(node, oldName))
            {
                if (use.Node is null) use.Graph.Output[use.Index].Name = newName;
                else use.Node.Input[use.Index] = newName;
            }
            Unregister(node);
        }

        if (_producer.Remove(oldName, out var producer))
        {
            for (int i = 0; i < producer.Output.Count; i++)
                if (producer.Output[i] == oldName) producer.Output[i] = newName;
            Unregister(producer);
            Register(producer);
        }
        if (_initializers.Remove(oldName, out var tensor))
        {
            tensor.Name = newName;
            _initializers[newName] = tensor;
        }
        foreach (var v in Graph.Input) if (v.Name == oldName) v.Name = newName;
        foreach (var v in Graph.Output) if (v.Name == oldName) v.Name = newName;
        foreach (var v in Graph.ValueInfo) if (v.Name == oldName) v.Name = newName;
        foreach (var a in Graph.QuantizationAnnotation)
        {
            if (a.TensorName == oldName) a.TensorName = newName;
            foreach (var p in a.QuantParameterTensorNames) if (p.Value == oldName) p.Value = newName;
        }
        foreach (var node in readers) Register(node);
        _used.Add(newName);
    }

    // ---------------------------------------------------------------- order

    /// <summary>The first node reading a value not yet defined at its position (O(nodes)); null when the graph is in topological order.</summary>
    public OrderViolation? FindOrderViolation()
    {
        var defined = new HashSet<string>(_initializers.Keys, StringComparer.Ordinal);
        foreach (var v in Graph.Input) defined.Add(v.Name);
        for (int i = 0; i < Graph.Node.Count; i++)
        {
            var node = Graph.Node[i];
            foreach (var read in _reads[node])
                if (!defined.Contains(read))
                    return new OrderViolation(node, i, read, _producer.ContainsKey(read));
            foreach (var o in node.Output) if (o.Length > 0) defined.Add(o);
        }
        return null;
    }

    public bool IsTopologicallySorted => FindOrderViolation() is null;

    /// <summary>
    /// Reorders the nodes topologically, keeping the existing order wherever it is already valid (among ready nodes the
    /// earliest goes first). O(n log n). Throws <see cref="OnnxFormatException"/> on a cycle or a read of a value nothing defines.
    /// </summary>
    public void SortTopologically()
    {
        int n = Graph.Node.Count;
        var nodes = Graph.Node.ToArray();
        var index = Positions();
        var pending = new int[n];
        for (int i = 0; i < n; i++)
        {
            foreach (var read in _reads[nodes[i]])
            {
                if (_producer.ContainsKey(read)) pending[i]++;
                else if (!_initializers.ContainsKey(read) && !IsGraphInput(read))
                    throw new OnnxFormatException($"graph '{Graph.Name}'", $"node '{nodes[i].Name}' ({nodes[i].OpType}) reads '{read}', which nothing defines; the graph cannot be ordered");
            }
        }
        var ready = new PriorityQueue<int, int>();
        for (int i = 0; i < n; i++) if (pending[i] == 0) ready.Enqueue(i, i);
        var sorted = new List<NodeProto>(n);
        while (ready.TryDequeue(out int i, out _))
        {
            var node = nodes[i];
            sorted.Add(node);
            foreach (var o in node.Output)
            {
                if (o.Length == 0 || !_consumers.TryGetValue(o, out var readers)) continue;
                foreach (var r in readers)
                {
                    int j = index[r];
                    if (--pending[j] == 0) ready.Enqueue(j, j);
                }
            }
        }
        if (sorted.Count != n)
        {
            var stuck = nodes.First(x => pending[index[x]] > 0);
            throw new OnnxFormatException($"graph '{Graph.Name}'", $"has a cycle through node '{stuck.Name}' ({stuck.OpType}); it cannot be ordered");
        }
        Graph.Node.Clear();
        Graph.Node.AddRange(sorted);
    }

    // ---------------------------------------------------------------- internals

    private Dictionary<NodeProto, int> Positions()
    {
        var position = new Dictionary<NodeProto, int>(Graph.Node.Count, ReferenceEqualityComparer.Instance);
        for (int i = 0; i < Graph.Node.Count; i++) position[Graph.Node[i]] = i;
        return position;
    }

    private void Register(NodeProto node)
    {
        var reads = ComputeReads(node);
        _reads[node] = reads;
        foreach (var read in reads)
        {
            if (!_consumers.TryGetValue(read, out var list)) _consumers[read] = list = [];
            list.Add(node);
        }
        foreach (var o in node.Output)
            if (o.Length > 0 && !_producer.TryAdd(o, node))
                throw new OnnxFormatException($"graph '{Graph.Name}'", $"value '{o}' is produced by two nodes ('{_producer[o].Name}' and '{node.Name}'); the graph is invalid");
    }

    private void Unregister(NodeProto node)
    {
        if (!_reads.Remove(node, out var reads)) return;
        foreach (var read in reads)
        {
            if (!_consumers.TryGetValue(read, out var list)) continue;
            int i = list.FindIndex(x => ReferenceEquals(x, node));
            if (i >= 0) list.RemoveAt(i);
            if (list.Count == 0) _consumers.Remove(read);
        }
        foreach (var o in node.Output)
            if (_producer.TryGetValue(o, out var p) && ReferenceEquals(p, node)) _producer.Remove(o);
    }

    private static string[] ComputeReads(NodeProto node)
    {
        bool nested = false;
        foreach (var a in node.Attribute) nested |= a.G is not null || a.Graphs.Count > 0;
        if (!nested)
        {
            // The common case: a handful of inputs, deduplicated by a linear scan.
            var buffer = new string[node.Input.Count];
            int count = 0;
            foreach (var i in node.Input)
                if (i.Length > 0 && Array.IndexOf(buffer, i, 0, count) < 0) buffer[count++] = i;
            return count == buffer.Length ? buffer : buffer[..count];
        }
        var reads = new HashSet<string>(StringComparer.Ordinal);
        foreach (var i in node.Input) if (i.Length > 0) reads.Add(i);
        foreach (var sub in OnnxGraphs.Subgraphs(node)) CollectOuterReads(sub, [], reads);
        return [.. reads];
    }

    /// <summary>Names read in <paramref name="graph"/> (recursively) that neither it nor an enclosing subgraph defines.</summary>
    private static void CollectOuterReads(GraphProto graph, List<HashSet<string>> enclosing, HashSet<string> result)
    {
        var local = LocalDefinitions(graph);
        enclosing.Add(local);
        bool Outer(string name) => name.Length > 0 && !enclosing.Any(s => s.Contains(name));
        foreach (var node in graph.Node)
        {
            foreach (var i in node.Input) if (Outer(i)) result.Add(i);
            foreach (var sub in OnnxGraphs.Subgraphs(node)) CollectOuterReads(sub, enclosing, result);
        }
        foreach (var o in graph.Output) if (Outer(o.Name)) result.Add(o.Name);
        enclosing.RemoveAt(enclosing.Count - 1);
    }

    private static HashSet<string> LocalDefinitions(GraphProto graph)
    {
        var local = new HashSet<string>(StringComparer.Ordinal);
        foreach (var v in graph.Input) local.Add(v.Name);
        foreach (var t in graph.Initializer) local.Add(t.Name);
        foreach (var s in graph.SparseInitializer) if (s.Values is not null) local.Add(s.Values.Name);
        foreach (var n in graph.Node) foreach (var o in n.Output) if (o.Length > 0) local.Add(o);
        return local;
    }

    /// <summary>Uses of <paramref name="value"/> by <paramref name="node"/>: its direct inputs and outer reads inside its subgraphs.</summary>
    private List<ValueUse> UsesIn(NodeProto node, string value)
    {
        var uses = new List<ValueUse>();
        for (int i = 0; i < node.Input.Count; i++)
            if (node.Input[i] == value) uses.Add(new ValueUse(Graph, node, i));
        foreach (var sub in OnnxGraphs.Subgraphs(node)) CollectNestedUses(sub, value, uses);
        return uses;
    }

    private static void CollectNestedUses(GraphProto graph, string value, List<ValueUse> uses)
    {
        if (LocalDefinitions(graph).Contains(value)) return; // shadowed: inner reads refer to the inner value
        foreach (var node in graph.Node)
        {
            for (int i = 0; i < node.Input.Count; i++)
                if (node.Input[i] == value) uses.Add(new ValueUse(graph, node, i));
            foreach (var sub in OnnxGraphs.Subgraphs(node)) CollectNestedUses(sub, value, uses);
        }
        for (int i = 0; i < graph.Output.Count; i++)
            if (graph.Output[i].Name == value) uses.Add(new ValueUse(graph, null, i));
    }

    private static int RemoveWhere<T>(Google.Protobuf.Collections.RepeatedField<T> field, Func<T, bool> predicate)
    {
        var kept = field.Where(x => !predicate(x)).ToList();
        int removed = field.Count - kept.Count;
        if (removed == 0) return 0;
        field.Clear();
        field.AddRange(kept);
        return removed;
    }
}
