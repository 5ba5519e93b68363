using EdgeDiffusion.Onnx.Protobuf;

namespace EdgeDiffusion.Onnx;

/// <summary>Walks the graphs of a model: the main graph, every subgraph held in node attributes, and functions' nodes.</summary>
public static class OnnxGraphs
{
    /// <summary>The graph and all graphs nested in its nodes' attributes, depth first.</summary>
    public static IEnumerable<GraphProto> WithSubgraphs(GraphProto graph)
    {
        var stack = new Stack<GraphProto>();
        stack.Push(graph);
        while (stack.Count > 0)
        {
            var g = stack.Pop();
            yield return g;
            foreach (var node in g.Node)
                foreach (var sub in Subgraphs(node))
                    stack.Push(sub);
        }
    }

    /// <summary>Graphs held in one node's attributes (If branches, Loop/Scan bodies).</summary>
    public static IEnumerable<GraphProto> Subgraphs(NodeProto node)
    {
        foreach (var a in node.Attribute)
        {
            if (a.G is not null) yield return a.G;
            foreach (var g in a.Graphs) yield return g;
        }
    }

    /// <summary>All initializers of the graph and its subgraphs.</summary>
    public static IEnumerable<TensorProto> AllInitializers(GraphProto graph) =>
        WithSubgraphs(graph).SelectMany(g => g.Initializer);

    /// <summary>Every dense tensor in the model: initializers, sparse initializers' parts and tensor-valued attributes.</summary>
    public static IEnumerable<TensorProto> AllTensors(ModelProto model)
    {
        if (model.Graph is null) yield break;
        foreach (var g in WithSubgraphs(model.Graph))
        {
            foreach (var t in g.Initializer) yield return t;
            foreach (var s in g.SparseInitializer)
            {
                if (s.Values is not null) yield return s.Values;
                if (s.Indices is not null) yield return s.Indices;
            }
            foreach (var node in g.Node)
                foreach (var t in AttributeTensors(node.Attribute)) yield return t;
        }
        foreach (var f in model.Functions)
            foreach (var node in f.Node)
                foreach (var t in AttributeTensors(node.Attribute)) yield return t;
    }

    private static IEnumerable<TensorProto> AttributeTensors(IEnumerable<AttributeProto> attributes)
    {
        foreach (var a in attributes)
        {
            if (a.T is not null) yield return a.T;
            foreach (var t in a.Tensors) yield return t;
            if (a.SparseTensor is not null)
            {
                if (a.SparseTensor.Values is not null) yield return a.SparseTensor.Values;
                if (a.SparseTensor.Indices is not null) yield return a.SparseTensor.Indices;
            }
        }
    }
}
