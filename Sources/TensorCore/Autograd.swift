/// Reverse-mode autodiff on a define-by-run tape.
///
/// Each differentiable op that sees an input requiring grad attaches a `Node` to its output's
/// vertex, holding its inputs' vertices and a hand-written backward that accumulates into their
/// gradients. The backward closure captures the input tensors whose values it reads and only
/// the vertices of the others, so an input whose values no backward reads (the operands of a
/// sum, the source of a gather) is freed as soon as the forward pass is done with it.
/// `backward()` walks the graph from a scalar in reverse topological order.
final class Node {
    let inputs: [Vertex]
    /// Receives the output tensor's gradient.
    let backward: (Tensor) -> Void
    let name: StaticString
    /// What the backward pass counts as in a profile; nil when it times its own parts.
    let kind: Profiler.Kind?

    init(_ name: StaticString, _ kind: Profiler.Kind?, inputs: [Vertex], backward: @escaping (Tensor) -> Void) {
        self.name = name
        self.kind = kind
        self.inputs = inputs
        self.backward = backward
    }
}

/// A tensor's place on the tape (`Tensor.vertex`): what the backward pass needs of it besides
/// its values.
final class Vertex {
    let shape: [Int]
    let count: Int
    var grad: Tensor?
    /// Where a new gradient goes (`Tensor.gradientBuffer`); nil for a new buffer each time.
    var gradientBuffer: Tensor?
    var requiresGrad = false
    /// The op that produced the tensor (nil for leaves and for outputs made without grad).
    var node: Node?
    /// A leaf that requires grad (a parameter), for `backward(leafReady:)`; weak, so the tape
    /// does not keep a leaf's values alive either.
    weak var leaf: Tensor?

    init(shape: [Int], count: Int) {
        self.shape = shape
        self.count = count
    }

    /// Gives `body` the gradient buffer and the GEMM-style `beta`: 0 when the buffer is new
    /// (contents undefined, must be overwritten), 1 when it holds a gradient to add to.
    func accumulateGrad(_ body: (UnsafeMutablePointer<Float>, Float) -> Void) {
        if let g = grad {
            body(g.pointer, 1)
        } else {
            let g = gradientBuffer ?? Tensor(uninitialized: shape)
            body(g.pointer, 0)
            grad = g
        }
    }

    /// Accumulates `g`, an op's output gradient that its backward hands over: when this vertex
    /// has no gradient yet (nor a buffer of its own for one), `g` becomes it as it is
    /// (reshaped), instead of a copy. The walk drops each op's output gradient once the op's
    /// backward has run, so the caller must be that backward, and must not write into any
    /// gradient that is `g` before it returns: no other input of the op may be this vertex
    /// while the op writes its gradient. A residual sum then passes one buffer down the
    /// residual stream instead of copying it at every block.
    func take(_ g: Tensor) {
        precondition(g.count == count, "take: \(g.shape) for a gradient of \(shape)")
        if grad == nil && gradientBuffer == nil {
            grad = g.shape == shape ? g : Tensor(sharing: g, shape: shape)
        } else {
            accumulateGrad(adding: g.pointer)
        }
    }

    /// Adds `values` (same element count) into the gradient.
    func accumulateGrad(adding values: UnsafePointer<Float>) {
        accumulateGrad { g, beta in
            if beta == 0 {
                g.update(from: values, count: count)
            } else {
                for i in 0..<count { g[i] += values[i] }
            }
        }
    }
}

public enum GradMode {
    @TaskLocal static var enabled = true

    public static var isEnabled: Bool { enabled }

    /// Runs `body` without recording anything on the tape (inference, target computation).
    public static func withoutGrad<R>(_ body: () throws -> R) rethrows -> R {
        try $enabled.withValue(false, operation: body)
    }
}

extension Tensor {
    /// True when an op on `inputs` must be recorded.
    static func needsGrad(_ inputs: [Tensor]) -> Bool {
        GradMode.enabled && inputs.contains { $0.requiresGrad }
    }

    /// Attaches a backward closure to `self` (an op's output) when any input needs a gradient.
    @discardableResult
    func recording(_ name: StaticString, _ kind: Profiler.Kind?, _ inputs: [Tensor], _ backward: @escaping (Tensor) -> Void) -> Tensor {
        if Tensor.needsGrad(inputs) {
            vertex.requiresGrad = true
            vertex.node = Node(name, kind, inputs: inputs.map(\.vertex), backward: backward)
        }
        return self
    }

    /// `Vertex.accumulateGrad(_:)` on this tensor's gradient.
    func accumulateGrad(_ body: (UnsafeMutablePointer<Float>, Float) -> Void) {
        vertex.accumulateGrad(body)
    }

    /// Adds `values` (same element count) into the gradient.
    func accumulateGrad(adding values: UnsafePointer<Float>) {
        vertex.accumulateGrad(adding: values)
    }

    /// Backpropagates from this scalar (or from `seed`, a gradient of the same shape).
    /// The graph is freed as it is consumed; gradients of intermediate tensors are released.
    ///
    /// `leafReady` is called with each leaf (a parameter, or an input that requires grad) as
    /// soon as its gradient is complete: the walk reaches a leaf only after every op that used
    /// it has run its backward, so nothing reads the leaf's value after that call and the call
    /// may update it in place and drop its gradient (`AdamW.minimize`).
    public func backward(seed: Tensor? = nil, leafReady: ((Tensor) -> Void)? = nil) {
        if seed == nil {
            precondition(count == 1, "backward() without a seed needs a scalar, got shape \(shape)")
        }
        guard requiresGrad else { return }
        if let seed { precondition(seed.shape == shape, "seed shape \(seed.shape) ≠ \(shape)") }
        Tensor.backward(from: vertex, seed: seed.map { ($0, false) }, leafReady: leafReady)
    }

    /// The walk of `backward(seed:leafReady:)` from a vertex, so a caller can let go of the
    /// root tensor's values first (no backward reads a graph's output). A seed that is
    /// `disposable` (the caller drops it afterwards) becomes the root's gradient as it is,
    /// instead of a copy.
    static func backward(from root: Vertex, seed: (values: Tensor, disposable: Bool)?, leafReady: ((Tensor) -> Void)? = nil) {
        // Iterative post-order DFS: parents before children in `order` reversed.
        var order: [Vertex] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Vertex, Int)] = [(root, 0)]
        visited.insert(ObjectIdentifier(root))
        while let (v, i) = stack.popLast() {
            guard let node = v.node, i < node.inputs.count else {
                order.append(v)
                continue
            }
            stack.append((v, i + 1))
            let child = node.inputs[i]
            if child.requiresGrad && visited.insert(ObjectIdentifier(child)).inserted {
                stack.append((child, 0))
            }
        }
        if let (values, disposable) = seed {
            if disposable && root.grad == nil { root.grad = values } else { root.accumulateGrad(adding: values.pointer) }
        } else {
            root.accumulateGrad { g, beta in g[0] = beta == 0 ? 1 : g[0] + 1 }
        }
        for v in order.reversed() {
            guard let node = v.node else {
                if let leafReady, v.grad != nil, let leaf = v.leaf { leafReady(leaf) }
                continue
            }
            v.node = nil  // releases the closure, and with it the values only it kept
            if let g = v.grad {
                if let kind = node.kind, kind != .recompute {
                    Profiler.measure(kind, .backward) { node.backward(g) }
                } else {
                    node.backward(g)  // times its own parts (`Tensor.recomputed`, `geluLinear`)
                }
                v.grad = nil  // intermediate: its gradient is consumed
            }
        }
    }
}
