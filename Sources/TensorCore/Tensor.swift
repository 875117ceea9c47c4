/// A float32 tensor: contiguous row-major storage of `shape`, from the buffer pool.
///
/// Tensors are reference types so the autodiff tape can point at them. A tensor is used by one
/// thread at a time (a trainer slot or an inference call); `@unchecked Sendable` lets it move
/// between threads, not be shared by them.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    public let storage: Storage
    /// This tensor's place on the tape: its gradient, the op that made it. The tape holds
    /// vertices, not tensors, so an op whose backward reads no input values (a sum, a gather)
    /// keeps its inputs' vertices only, and their values are freed once nothing else needs them.
    let vertex: Vertex
    /// Accumulated gradient, same shape. Created by `backward()` for tensors that require grad.
    public var grad: Tensor? {
        get { vertex.grad }
        set { vertex.grad = newValue }
    }
    /// Where `backward()` writes this tensor's gradient when it has none yet (the buffer is
    /// then `grad`), instead of a new buffer: set by an optimizer that keeps its parameters'
    /// gradients in place from step to step (`AdamW.holdsGradientBuffers`). A gradient read
    /// before `grad` is dropped and the next backward pass starts is overwritten by it.
    public var gradientBuffer: Tensor? {
        get { vertex.gradientBuffer }
        set {
            if let newValue { precondition(newValue.shape == shape, "gradient buffer \(newValue.shape) for \(shape)") }
            vertex.gradientBuffer = newValue
        }
    }
    /// Leaf parameters set this; op outputs inherit it from their inputs while grad mode is on.
    public var requiresGrad: Bool {
        get { vertex.requiresGrad }
        set {
            vertex.requiresGrad = newValue
            vertex.leaf = newValue ? self : nil
        }
    }
    /// The op that produced this tensor (nil for leaves and for outputs made without grad).
    var node: Node? { vertex.node }
    /// A weight's values rounded to bf16, kept by `AdamW` while it updates in bf16 (and by
    /// the inference service for a bf16 model) so that `linear` does not round the weight
    /// again for each GEMM. Whoever writes the values of a tensor that has one must refresh it
    /// or set it to nil.
    public var bf16Copy: BF16Matrix?

    /// Uninitialised tensor (contents are whatever the pooled buffer held).
    public init(uninitialized shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.storage = BufferPool.shared.storage(count: count)
        self.vertex = Vertex(shape: shape, count: count)
    }

    /// A view with a new shape on the same storage (used by `reshaped`).
    init(sharing other: Tensor, shape: [Int]) {
        self.shape = shape
        self.count = other.count
        self.storage = other.storage
        self.vertex = Vertex(shape: shape, count: other.count)
    }

    public convenience init(zeros shape: [Int]) {
        self.init(uninitialized: shape)
        data.update(repeating: 0)
    }

    public convenience init(repeating value: Float, shape: [Int]) {
        self.init(uninitialized: shape)
        data.update(repeating: value)
    }

    public convenience init(_ values: [Float], shape: [Int]) {
        self.init(uninitialized: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape) (\(count) elements)")
        _ = data.initialize(from: values)
    }

    public convenience init(scalar: Float) { self.init([scalar], shape: []) }

    /// The elements, mutable in place (no copy).
    public var data: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: storage.pointer, count: count)
    }

    /// The first element. Valid while the tensor lives, and Swift may release a tensor right
    /// after its last use in the source: a pointer used later needs `withExtendedLifetime`
    /// (tests catch a slip with `MIMSERVE_POISON_RELEASED=1`, see `BufferPool`).
    public var pointer: UnsafeMutablePointer<Float> { storage.pointer }

    public var rank: Int { shape.count }

    public func dim(_ axis: Int) -> Int { shape[axis < 0 ? shape.count + axis : axis] }

    public var scalars: [Float] { Array(data) }

    /// The value of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item of a tensor with shape \(shape)")
        return storage.pointer[0]
    }

    /// A copy that does not take part in autodiff.
    public func copy() -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.pointer.update(from: pointer, count: count)
        return t
    }

    /// Takes `source`'s values (same count), dropping any bf16 copy of the old ones: how
    /// weights are loaded.
    public func load(from source: Tensor) {
        precondition(source.count == count, "load: \(source.shape) into \(shape)")
        pointer.update(from: source.pointer, count: count)
        bf16Copy = nil
    }

    /// The same values, detached from the tape (shares storage).
    public func detached() -> Tensor { Tensor(sharing: self, shape: shape) }

    public func zeroGrad() { grad = nil }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = data.prefix(8).map { String(format4($0)) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(preview)\(count > 8 ? ", …" : "")])"
    }
}

private func format4(_ x: Float) -> String {
    let r = (x * 10000).rounded() / 10000
    return "\(r)"
}
