import Foundation
import GRDB
import PostgresNIO
import Testing
@testable import Store

/// What a job's row says about its lease, read behind the store's back.
struct LeaseRow: Equatable {
    var owner: String?
    var token: String?
    var expiresAt: Date?
    var interruptions: Int
}

extension Store {
    func leaseRow(_ id: String) throws -> LeaseRow {
        switch backend {
        case let sqlite as SQLiteStore:
            return try sqlite.read { db in
                guard let row = try Row.fetchOne(db, sql: """
                    SELECT lease_owner, lease_token, lease_expires_at, interruptions FROM jobs WHERE id = ?
                    """, arguments: [id]) else { throw StoreError.notFound("job \(id)") }
                return LeaseRow(owner: row[0], token: row[1], expiresAt: row[2], interruptions: row[3])
            }
        case let pg as PostgresStore:
            return try pg.read { conn in
                let (owner, token, expires, interruptions) = try await conn.rows("""
                    SELECT lease_owner, lease_token, lease_expires_at, interruptions FROM jobs WHERE id = \(id)
                    """)[0].decode((String?, String?, Date?, Int).self)
                return LeaseRow(owner: owner, token: token, expiresAt: expires, interruptions: interruptions)
            }
        default:
            fatalError("unknown backend")
        }
    }
}

@Suite("Store: leases") struct LeaseTests {
    @Test(arguments: Backend.underTest) func aClaimSetsALease(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let ids = try (0..<2).map { try store.submit(newJob($0)).job.id }
        let before = Date()
        let a = try #require(try store.claimNext(owner: "w1", leaseSeconds: 30))
        let b = try #require(try store.claimNext(owner: "w2", leaseSeconds: 30))
        #expect(a.lease.jobID == ids[0] && b.lease.jobID == ids[1] && a.lease.token != b.lease.token)
        let row = try store.leaseRow(ids[0])
        #expect(row.owner == "w1" && row.token == a.lease.token && row.interruptions == 0)
        let expires = try #require(row.expiresAt)
        #expect(expires > before.addingTimeInterval(25) && expires < Date().addingTimeInterval(35))
        // A live lease keeps its job: there is nothing left to claim.
        #expect(try store.claimNext(owner: "w3") == nil)
    }

    @Test(arguments: Backend.underTest) func renewalExtendsTheLease(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let id = try store.submit(newJob()).job.id
        let claim = try #require(try store.claimNext(owner: "w1", leaseSeconds: 5))
        let first = try #require(try store.leaseRow(id).expiresAt)
        try store.renew(claim.lease, leaseSeconds: 120)
        let renewed = try #require(try store.leaseRow(id).expiresAt)
        #expect(renewed > first.addingTimeInterval(100))
        let forged = Lease(jobID: id, owner: "w1", token: "not-the-token")
        #expect(throws: StoreError.leaseLost(jobID: id)) { try store.renew(forged) }
    }

    /// The lease lapsed (a frozen or dead trainer): the next claim, from anyone, takes the job
    /// back with one more interruption and claims it; every write under the old token is refused.
    @Test(arguments: Backend.underTest) func anExpiredLeaseGoesToTheNextClaimerAndFencesTheOldHolder(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let id = try store.submit(newJob()).job.id
        let old = try #require(try store.claimNext(owner: "w1", leaseSeconds: -1)).lease
        try store.record(progress: JobProgress(step: 1, loss: 1, lr: 0.1, imagesPerS: nil, etaS: nil),
                         metrics: [MetricRecord(jobID: id, step: 1, loss: 1, lr: 0.1, imagesPerS: nil, wallTimeS: 1)], for: id, lease: old)
        let taken = try #require(try store.claimNext(owner: "w2"))
        #expect(taken.lease.jobID == id && taken.lease.token != old.token)
        #expect(taken.expired == Store.Interrupted(requeued: [id]))
        let row = try store.leaseRow(id)
        #expect(row.owner == "w2" && row.token == taken.lease.token && row.interruptions == 1)
        #expect(try store.events(jobID: id).map(\.dataJSON).contains { $0.contains("lease expired") })

        let lost = StoreError.leaseLost(jobID: id)
        let events = try store.lastEventID(jobID: id)
        #expect(throws: lost) {
            try store.record(progress: JobProgress(step: 2, loss: 1, lr: 0.1, imagesPerS: nil, etaS: nil),
                             metrics: [MetricRecord(jobID: id, step: 2, loss: 1, lr: 0.1, imagesPerS: nil, wallTimeS: 2)], for: id, lease: old)
        }
        #expect(throws: lost) {
            try store.addCheckpoint(CheckpointRecord(jobID: id, step: 2, path: "c/2", bytes: 1, sha256: "a", isFinal: false), lease: old)
        }
        #expect(throws: lost) { try store.deleteCheckpoint(jobID: id, step: 1, lease: old) }
        #expect(throws: lost) { try store.transition(id, to: .succeeded, from: [.running], lease: old) }
        #expect(throws: lost) { try store.stopRequest(id, lease: old) }
        #expect(throws: lost) { try store.renew(old) }
        #expect(try store.metricCount(jobID: id) == 1 && store.checkpoints(jobID: id).isEmpty)
        #expect(try store.lastEventID(jobID: id) == events && store.job(id)?.state == .running && store.job(id)?.step == 1)

        // The new holder writes as usual.
        try store.record(progress: JobProgress(step: 2, loss: 1, lr: 0.1, imagesPerS: nil, etaS: nil),
                         metrics: [MetricRecord(jobID: id, step: 2, loss: 1, lr: 0.1, imagesPerS: nil, wallTimeS: 2)], for: id, lease: taken.lease)
        try store.addCheckpoint(CheckpointRecord(jobID: id, step: 2, path: "c/2", bytes: 1, sha256: "a", isFinal: true), lease: taken.lease)
        #expect(try store.stopRequest(id, lease: taken.lease) == nil)
        #expect(try store.transition(id, to: .succeeded, from: [.running], lease: taken.lease).state == .succeeded)
        #expect(try store.leaseRow(id) == LeaseRow(owner: nil, token: nil, expiresAt: nil, interruptions: 1))
        #expect(throws: lost) { try store.renew(taken.lease) }
    }

    /// Leases count against the same limit as crashes: the third expiry fails the job.
    @Test(arguments: Backend.underTest) func aJobWhoseLeaseExpiresThreeTimesFails(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let id = try store.submit(newJob()).job.id
        #expect(try store.claimNext(owner: "w", leaseSeconds: -1)?.lease.jobID == id)
        for expiry in 1...Store.maxInterruptions {
            let claim = try store.claimNext(owner: "w", leaseSeconds: -1)
            if expiry < Store.maxInterruptions {
                #expect(claim?.lease.jobID == id && claim?.expired == Store.Interrupted(requeued: [id]))
            } else {
                #expect(claim == nil)
            }
        }
        let job = try #require(try store.job(id))
        #expect(job.state == .failed && job.error == "interrupted 3 times (its trainer crashed or lost the job's lease); not resumed again")
    }

    /// A cancel asked of a job whose trainer vanished is honoured when its lease is taken back.
    @Test(arguments: Backend.underTest) func anExpiredLeaseHonoursAPendingStop(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let id = try store.submit(newJob()).job.id
        _ = try store.claimNext(owner: "w1", leaseSeconds: -1)
        _ = try store.requestStop(id, .cancel)
        #expect(try store.claimNext(owner: "w2") == nil)
        #expect(try store.job(id)?.state == .cancelled)
    }

    /// A job that leaves `running` by another hand (a start-up re-queue) ends its lease too.
    @Test(arguments: Backend.underTest) func leavingRunningEndsTheLease(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let id = try store.submit(newJob()).job.id
        let lease = try #require(try store.claimNext(owner: "w1")).lease
        #expect(try store.requeueInterrupted() == Store.Interrupted(requeued: [id]))
        #expect(try store.leaseRow(id) == LeaseRow(owner: nil, token: nil, expiresAt: nil, interruptions: 1))
        #expect(throws: StoreError.leaseLost(jobID: id)) { try store.stopRequest(id, lease: lease) }
    }
}
