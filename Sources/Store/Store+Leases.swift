import Foundation

/// A trainer's hold on one running job, from its claim until the job leaves `running` or the
/// lease expires and another trainer claims the job. Every write the trainer makes for the job
/// passes its lease, and the store refuses it (`StoreError.leaseLost`) once the job's row holds
/// another token: a trainer that froze past its lease cannot write over the one that took over.
public struct Lease: Sendable, Equatable {
    public let jobID: String
    /// Who holds it (`Store.workerID()`): for people reading the row, never checked.
    public let owner: String
    /// Random per claim; the only thing a write is checked against.
    public let token: String

    public init(jobID: String, owner: String, token: String) {
        self.jobID = jobID
        self.owner = owner
        self.token = token
    }
}

/// A claimed job and the lease that lets its trainer write for it.
public struct Claim: Sendable {
    public let change: StateChange
    public let lease: Lease
    /// Running jobs whose lease had expired, which this claim took back first: re-queued (the
    /// claim may then have taken one of them), failed after too many interruptions, or stopped
    /// as asked before their trainer vanished.
    public let expired: Store.Interrupted
}

extension Store {
    /// The default lease: a trainer renews every third of it, so two missed heartbeats in a row
    /// still keep the job.
    public static let defaultLeaseSeconds = 30.0

    /// Claims the oldest queued job for `owner`, with a lease of `leaseSeconds`.
    ///
    /// Expired leases are noticed here, by whoever claims next, rather than by a reaper of its
    /// own: in the same transaction, every running job whose lease has expired goes back to the
    /// queue with one more interruption (failing at `maxInterruptions`), or ends cancelled or
    /// paused when a client asked for that, exactly as start-up treats jobs a crash left
    /// running. Then the oldest queued job, possibly one just taken back, is claimed. So a job
    /// waits for another trainer only when there is one with a free slot, and then for at most
    /// one lease plus that trainer's poll interval.
    public func claimNext(owner: String, leaseSeconds: Double = Store.defaultLeaseSeconds) throws(StoreError) -> Claim? {
        let token = Self.newLeaseToken()
        return try backend.claimNext(owner: owner, token: token, leaseSeconds: leaseSeconds)
    }

    /// Pushes the lease's expiry `leaseSeconds` from now. Throws `.leaseLost` when the job is
    /// no longer this lease's (another trainer took it, or it left `running`). A lease that
    /// expired but that nobody took yet is still renewed: no one else has written for the job.
    public func renew(_ lease: Lease, leaseSeconds: Double = Store.defaultLeaseSeconds) throws(StoreError) {
        try backend.renew(lease, leaseSeconds: leaseSeconds)
    }

    /// Names this process among the workers sharing a database: host name and process id.
    public static func workerID() -> String {
        "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier)"
    }

    static func newLeaseToken() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<2).map { _ in
            let hex = String(g.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
    }
}
