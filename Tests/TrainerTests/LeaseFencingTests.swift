import Config
import Foundation
import Synchronization
import Testing
import Store
@testable import Trainer
import TestSupport

@Suite("Trainer: leases") struct LeaseFencingTests {
    struct Snapshot: Equatable {
        var metrics: Int
        var checkpoints: [Int]
        var lastEventID: Int64
        var step: Int
        var files: [String]
    }

    static func snapshot(_ store: Store, _ dir: URL, _ id: String) throws -> Snapshot {
        let files = (FileManager.default.subpaths(atPath: dir.path) ?? []).filter { $0.contains(id) }.sorted()
        return Snapshot(metrics: try store.metricCount(jobID: id), checkpoints: try store.checkpoints(jobID: id).map(\.step),
                        lastEventID: try store.lastEventID(jobID: id), step: try store.job(id)?.step ?? -1, files: files)
    }

    /// Another trainer takes the job between two steps (as after this one's lease expired): the
    /// run stops before its next step and writes nothing more: no metrics, no checkpoint (row or
    /// file), no state change, no event.
    @Test func aRunThatLostItsLeaseStopsWithoutWriting() async throws {
        struct Shared {
            var target: String?
            var store: Store?
            var dir: URL?
            var taken: Snapshot?
            var thief: Lease?
            var stepsAfter = 0
        }
        let shared = Mutex(Shared())
        let h = try Harness(observer: { id, step, _, _ in
            let (target, store, dir, done) = shared.withLock { ($0.target, $0.store, $0.dir, $0.thief != nil) }
            guard id == target, let store, let dir else { return }
            if done {
                shared.withLock { $0.stepsAfter += 1 }
                return
            }
            guard step == 6 else { return }
            // What an expired lease leads to: taken back to the queue, claimed by someone else.
            _ = try? store.transition(id, to: .queued, from: [.running])
            // The other trainer never renews, so its lease must outlast the test: with the
            // default 30 s, a slow CI machine let it expire, and this pool took the job back.
            let thief = try? store.claimNext(owner: "another-worker", leaseSeconds: 3600)
            let taken = try? Self.snapshot(store, dir, id)
            shared.withLock {
                $0.taken = taken
                $0.thief = thief?.lease
            }
        })
        shared.withLock {
            $0.store = h.store
            $0.dir = h.dir
        }
        try h.pool.start()
        defer { h.pool.shutdown() }
        let id = try h.submit(steps: 40, overrides: ["checkpoint_every": .number(4)])
        shared.withLock { $0.target = id }
        let deadline = Date().addingTimeInterval(60)
        try await offThread { while shared.withLock({ $0.thief == nil }) && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) } }
        let thief = try #require(shared.withLock { $0.thief })
        #expect(thief.jobID == id && thief.owner == "another-worker")
        let taken = try #require(shared.withLock { $0.taken })
        try await offThread { while h.pool.runningJobs.contains(id) && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) } }
        #expect(!h.pool.runningJobs.contains(id))
        #expect(shared.withLock { $0.stepsAfter } == 0)
        #expect(try Self.snapshot(h.store, h.dir, id) == taken)
        #expect(taken.checkpoints == [4] && taken.step <= 6)
        #expect(try h.store.job(id)?.state == .running)
        #expect(try h.store.stopRequest(id, lease: thief) == nil)
    }
}
