/// Reverse-mode autodiff on a define-by-run tape.
///
/// Each differentiable op that sees an input requiring grad attaches a `Node` to its output,
/// holding the inputs and a hand-written backward that accumulates into their gradients.
/// `backward()` walks the graph from a scalar in reverse topological order.
final class Node {
    let inputs: [Tensor]
    /// Receives the output tensor's gradient.
    let backward: (Tensor) -> Void
    let name: StaticString
    /// What the backward pass counts as in a profile; nil when it times its own parts.
    let kind: Profiler.Kind?

    init(_ name: StaticString, _ kind: Profiler.Kind?, inputs: [Tensor], backward: @escaping (Tensor) -> Void) {
        self.name = name
        self.kind = kind
        self.inputs = inputs
        self.backward = backward
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
            requiresGrad = true
            node = Node(name, kind, inputs: inputs, backward: backward)
        }
        return self
    }

    /// Gives `body` this tensor's gradient buffer and the GEMM-style `beta`: 0 when the buffer
    /// is new (contents undefined, must be overwritten), 1 when it holds a gradient to add to.
    func accumulateGrad(_ body: (UnsafeMutablePointer<Float>, Float) -> Void) {
        if let g = grad {
            body(g.pointer, 1)
        } else {
            let g = Tensor(uninitialized: shape)
            body(g.pointer, 0)
            grad = g
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
        // Iterative post-order DFS: parents before children in `order` reversed.
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Int)] = [(self, 0)]
        visited.insert(ObjectIdentifier(self))
        while let (t, i) = stack.popLast() {
            guard let node = t.node, i < node.inputs.count else {
                order.append(t)
                continue
            }
            stack.append((t, i + 1))
            let child = node.inputs[i]
            if child.requiresGrad && visited.insert(ObjectIdentifier(child)).inserted {
                stack.append((child, 0))
            }
        }
        if let seed {
            precondition(seed.shape == shape, "seed shape \(seed.shape) ≠ \(shape)")
            accumulateGrad(adding: seed.pointer)
        } else {
            accumulateGrad { g, beta in g[0] = beta == 0 ? 1 : g[0] + 1 }
        }
        for t in order.reversed() {
            guard let node = t.node else {
                if let leafReady, t.grad != nil { leafReady(t) }
                continue
            }
            t.node = nil
            if let g = t.grad {
                if let kind = node.kind, kind != .recompute {
                    Profiler.measure(kind, .backward) { node.backward(g) }
                } else {
                    node.backward(g)  // times its own parts (`Tensor.recomputed`, `geluLinear`)
                }
                t.grad = nil  // intermediate: its gradient is consumed
            }
        }
    }
}
