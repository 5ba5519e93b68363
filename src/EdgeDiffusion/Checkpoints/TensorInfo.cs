namespace EdgeDiffusion.Checkpoints;

/// <summary>
/// One tensor of a safetensors file as its header describes it: element type, shape (outermost first, row-major)
/// and its bytes [<see cref="Begin"/>, <see cref="End"/>) counted from the first byte after the header.
/// </summary>
public sealed record TensorInfo(string Name, SafetensorsDType DType, IReadOnlyList<long> Shape, long Begin, long End)
{
    /// <summary>Product of the shape (1 for a scalar, shape []).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long d in Shape) n *= d;
            return n;
        }
    }

    public long ByteLength => End - Begin;

    public override string ToString() => $"{Name} {DType.Name()} [{string.Join(", ", Shape)}] bytes {Begin}..{End}";
}
