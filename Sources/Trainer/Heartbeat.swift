import Dispatch
import Store
import Synchronization

/// Renews a running job's lease every third of its length, on a thread of its own, so a step
/// longer than the lease (a big model on a slow machine) does not lose the job. When the store
/// answers that the lease is gone, `lost` turns true and the run stops at its next step. A
/// renewal that fails for another reason (the database unreachable) is only logged: if the
/// outage outlasts the lease, another worker takes the job and this one's writes are refused.
final class Heartbeat: Sendable {
    private struct State {
        var lost = false
        var stopped = false
    }

    private let state = Mutex(State())
    private let wakeUp = DispatchSemaphore(value: 0)

    init(store: Store, lease: Lease, seconds: Double, log: @escaping @Sendable (String) -> Void) {
        let every = max(0.001, seconds / 3)
        DispatchQueue(label: "mimserve.heartbeat.\(lease.jobID)", qos: .userInitiated).async { [self] in
            while true {
                _ = wakeUp.wait(timeout: .now() + every)
                if state.withLock({ $0.stopped || $0.lost }) { return }
                do {
                    try store.renew(lease, leaseSeconds: seconds)
                } catch StoreError.leaseLost {
                    state.withLock { $0.lost = true }
                } catch {
                    log("job \(lease.jobID): cannot renew its lease: \(error)")
                }
            }
        }
    }

    var lost: Bool { state.withLock { $0.lost } }

    func stop() {
        state.withLock { $0.stopped = true }
        wakeUp.signal()
    }
}
