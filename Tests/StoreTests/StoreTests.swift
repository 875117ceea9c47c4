import Dispatch
import Foundation
import Testing
@testable import Store
import TestSupport

func newJob(_ n: Int = 0, method: String = "mae", key: String? = nil, hash: String? = nil) -> NewJob {
    NewJob(method: method, preset: "tiny", configJSON: #"{"n":\#(n)}"#, datasetID: "synthetic", totalSteps: 10,
           idempotencyKey: key, requestHash: hash)
}

@Suite("Store: migrations") struct MigrationTests {
    func folder(_ files: [String: String]) throws -> URL {
        let dir = Scratch.url("mig")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (name, sql) in files { try sql.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8) }
        return dir
    }

    /// (The crash test starts the executable from a temporary working directory too.)
    @Test(arguments: Backend.underTest) func foundWithoutHintsAndAppliedOnce(_ backend: Backend) throws {
        let set = try MigrationSet.locate(dialect: backend.dialect, environment: [:])
        #expect(set.files.first?.name == "0001_initial")
        let store = try makeStore(backend, migrations: set)
        #expect(try store.appliedMigrations() == set.files.map(\.name))
        // Opening again applies nothing twice.
        let again = try Store(store.location, migrations: set)
        #expect(try again.appliedMigrations() == set.files.map(\.name))
        #expect(try again.integrityCheck() == "ok")
    }

    @Test func badNamesAndGapsAreRejected() throws {
        #expect(throws: StoreError.self) { try MigrationSet(directory: folder(["0001_a.sql": "", "0003_c.sql": ""])) }
        #expect(throws: StoreError.self) { try MigrationSet(directory: folder(["1_a.sql": ""])) }
        #expect(throws: StoreError.self) { try MigrationSet(directory: folder([:])) }
        #expect(throws: StoreError.self) { try MigrationSet.locate(explicit: "/nonexistent/migrations") }
    }

    /// PostgreSQL runs a migration statement by statement; semicolons in comments, strings,
    /// identifiers and dollar-quoted bodies do not split.
    @Test func migrationsSplitIntoStatements() {
        let file = MigrationSet.File(name: "0001_x", sql: """
            -- a comment; with a semicolon
            CREATE TABLE a (x TEXT DEFAULT 'a;b''c'); /* block; comment */
            CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
            SELECT "we;ird", $1;;
            """)
        #expect(file.statements == ["CREATE TABLE a (x TEXT DEFAULT 'a;b''c')",
                                    "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
                                    #"SELECT "we;ird", $1"#])
    }

    /// Both dialects release the same migrations, under the same names.
    @Test func bothDialectsHaveTheSameMigrations() throws {
        let sqlite = try MigrationSet.locate(dialect: .sqlite, environment: [:])
        let postgres = try MigrationSet.locate(dialect: .postgres, environment: [:])
        #expect(sqlite.files.map(\.name) == postgres.files.map(\.name))
        #expect(sqlite.directory.lastPathComponent == "sqlite" && postgres.directory.lastPathComponent == "postgres")
        let root = sqlite.directory.deletingLastPathComponent().path
        #expect(try MigrationSet.locate(explicit: root, dialect: .postgres).files == postgres.files)
    }

    @Test(arguments: Backend.underTest) func aFailingMigrationLeavesNothingBehind(_ backend: Backend) throws {
        let good = try folder(["0001_a.sql": "CREATE TABLE a (x INTEGER);"])
        let location = backend.freshLocation()
        _ = try Store(location, migrations: MigrationSet(directory: good))
        let bad = try folder(["0001_a.sql": "CREATE TABLE a (x INTEGER);", "0002_b.sql": "CREATE TABLE b (y INTEGER); CREATE TABLE oops ("])
        #expect(throws: StoreError.self) { try Store(location, migrations: MigrationSet(directory: bad)) }
        let reopened = try Store(location, migrations: MigrationSet(directory: good))
        #expect(try reopened.appliedMigrations() == ["0001_a"])
        #expect(try !reopened.tableExists("b"))
    }

    @Test(arguments: Backend.underTest) func aNewerDatabaseIsRefused(_ backend: Backend) throws {
        let newer = try folder(["0001_a.sql": "CREATE TABLE a (x INTEGER);", "0002_b.sql": "CREATE TABLE b (y INTEGER);"])
        let location = backend.freshLocation()
        _ = try Store(location, migrations: MigrationSet(directory: newer))
        let older = try folder(["0001_a.sql": "CREATE TABLE a (x INTEGER);"])
        #expect(throws: StoreError.newerSchema(["0002_b"])) { try Store(location, migrations: MigrationSet(directory: older)) }
    }
}

@Suite("Store: jobs") struct JobStoreTests {
    @Test(arguments: Backend.underTest) func submitListAndPaginate(_ backend: Backend) throws {
        let store = try makeStore(backend)
        for i in 0..<7 { _ = try store.submit(newJob(i, method: i % 2 == 0 ? "mae" : "simmim")) }
        let first = try store.jobs(JobQuery(limit: 3))
        #expect(first.jobs.map(\.seq) == [7, 6, 5])
        let second = try store.jobs(JobQuery(limit: 3, pageToken: first.nextPageToken))
        #expect(second.jobs.map(\.seq) == [4, 3, 2])
        let third = try store.jobs(JobQuery(limit: 3, pageToken: second.nextPageToken))
        #expect(third.jobs.map(\.seq) == [1] && third.nextPageToken == nil)
        #expect(try store.jobs(JobQuery(method: "simmim")).jobs.map(\.seq) == [6, 4, 2])
        #expect(throws: StoreError.badPageToken) { try store.jobs(JobQuery(pageToken: "garbage")) }
        let one = first.jobs[0]
        #expect(try store.job(one.id) == one)
        #expect(one.state == .queued && one.configJSON == #"{"n":6}"#)
    }

    @Test(arguments: Backend.underTest) func idempotencyKeyReturnsTheSameJobOrConflicts(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let (a, created) = try store.submit(newJob(1, key: "k1", hash: "h1"))
        let (b, createdAgain) = try store.submit(newJob(1, key: "k1", hash: "h1"))
        #expect(created && !createdAgain && a.id == b.id)
        #expect(throws: StoreError.idempotencyConflict(key: "k1", jobID: a.id)) { try store.submit(newJob(2, key: "k1", hash: "h2")) }
        #expect(try store.jobs(JobQuery()).jobs.count == 1)
    }

    @Test(arguments: Backend.underTest) func transitionsAreGuarded(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let job = try store.submit(newJob()).job
        #expect(throws: StoreError.illegalTransition(id: job.id, from: .queued, to: .succeeded)) {
            try store.transition(job.id, to: .succeeded)
        }
        #expect(try store.job(job.id)?.state == .queued)
        let running = try #require(try store.claimNextQueued())
        #expect(running.id == job.id && running.state == .running && running.startedAt != nil)
        try store.transition(job.id, to: .paused)
        try store.transition(job.id, to: .queued)
        _ = try store.claimNextQueued()
        let done = try store.transition(job.id, to: .failed, error: "loss is NaN at step 3")
        #expect(done.error == "loss is NaN at step 3" && done.finishedAt != nil)
        for next in JobState.allCases {
            #expect(throws: StoreError.self) { try store.transition(job.id, to: next) }
        }
        #expect(throws: StoreError.notFound("job nope")) { try store.transition("nope", to: .running) }
        let kinds = try store.events(jobID: job.id).map { $0.dataJSON }
        #expect(kinds.count == 6 && kinds.last!.contains("failed"))
        // A transition guarded on the expected source state refuses others.
        let other = try store.submit(newJob(2)).job
        #expect(throws: StoreError.self) { try store.transition(other.id, to: .cancelled, from: [.running]) }
    }

    @Test(arguments: Backend.underTest) func claimsOldestFirstAndRequeuesInterrupted(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let ids = try (0..<3).map { try store.submit(newJob($0)).job.id }
        #expect(try store.claimNextQueued()?.id == ids[0])
        #expect(try store.claimNextQueued()?.id == ids[1])
        #expect(try store.requeueInterrupted() == Store.Interrupted(requeued: [ids[0], ids[1]]))
        #expect(try store.claimNextQueued()?.id == ids[0])
        let counts = try store.countsByState()
        #expect(counts[.queued] == 2 && counts[.running] == 1 && counts[.failed] == 0)
    }

    /// Each change reports the id of the very event it inserted, in the same transaction.
    @Test(arguments: Backend.underTest) func stateChangesAndCheckpointsReturnTheirEventIDs(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let id = try store.submit(newJob()).job.id
        let claimed = try #require(try store.claimNextQueued())
        #expect(claimed.eventID == (try store.events(jobID: id).last?.id))
        let other = try store.submit(newJob(9)).job.id  // events of another job in between
        _ = other
        let checkpoint = try store.addCheckpoint(CheckpointRecord(jobID: id, step: 1, path: "c/1", bytes: 1, sha256: "a", isFinal: false))
        let done = try store.transition(id, to: .succeeded)
        let ids = try store.events(jobID: id).map(\.id)
        #expect(ids.suffix(2) == [checkpoint, done.eventID] && done.state == .succeeded)
    }

    /// A job that takes its process down with it runs at most three times.
    @Test(arguments: Backend.underTest) func aJobInterruptedThreeTimesFailsInsteadOfLooping(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let id = try store.submit(newJob()).job.id
        for crash in 1...Store.maxInterruptions {
            #expect(try store.claimNextQueued()?.id == id)
            let found = try store.requeueInterrupted()
            #expect(found == (crash < Store.maxInterruptions ? Store.Interrupted(requeued: [id]) : Store.Interrupted(failed: [id])))
        }
        let job = try #require(try store.job(id))
        #expect(job.state == .failed && job.error == "interrupted 3 times (its trainer crashed or lost the job's lease); not resumed again")
        #expect(try store.claimNextQueued() == nil)
    }

    /// Cancel and pause are decided and written in one transaction with the state they depend on.
    @Test(arguments: Backend.underTest) func stopRequestsAreWrittenWithTheStateCheck(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let queued = try store.submit(newJob(1)).job.id
        #expect(throws: StoreError.self) { try store.requestStop(queued, .pause) }
        guard case .moved(let change) = try store.requestStop(queued, .cancel) else { Issue.record("not moved"); return }
        #expect(try change.state == .cancelled && change.eventID == store.lastEventID(jobID: queued))

        let running = try store.submit(newJob(2)).job.id
        _ = try store.claimNextQueued()
        #expect(try store.stopRequest(running) == nil)
        guard case .requested(let job) = try store.requestStop(running, .pause) else { Issue.record("not requested"); return }
        #expect(try job.state == .running && store.stopRequest(running) == .pause)
        _ = try store.requestStop(running, .cancel)
        _ = try store.requestStop(running, .pause)  // never downgrades a cancel
        #expect(try store.stopRequest(running) == .cancel)
        try store.transition(running, to: .cancelled)
        #expect(try store.stopRequest(running) == nil)
        #expect(throws: StoreError.self) { try store.requestStop(running, .cancel) }
        #expect(throws: StoreError.self) { try store.requestStop("j-none", .cancel) }
    }

    /// A request made before the process died is honoured at start-up, not lost to a re-queue.
    @Test(arguments: Backend.underTest) func startUpHonoursRequestsMadeBeforeACrash(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let ids = try (0..<3).map { try store.submit(newJob($0)).job.id }
        for _ in ids { _ = try store.claimNextQueued() }
        _ = try store.requestStop(ids[0], .cancel)
        _ = try store.requestStop(ids[1], .pause)
        let found = try store.requeueInterrupted()
        #expect(found.stopped == [.init(id: ids[0], state: .cancelled), .init(id: ids[1], state: .paused)])
        #expect(found.requeued == [ids[2]])
        #expect(try ids.map { try store.job($0)!.state } == [.cancelled, .paused, .queued])
        #expect(try ids.map { try store.stopRequest($0) } == [nil, nil, nil])
    }

    /// A stream catches up in pages; the page that reaches the end reads events and job in the
    /// same snapshot as the last metrics.
    @Test(arguments: Backend.underTest) func historyComesInPages(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let id = try store.submit(newJob()).job.id
        _ = try store.claimNextQueued()
        let rows = (1...25).map { MetricRecord(jobID: id, step: $0, loss: 1 / Double($0), lr: 0.1, imagesPerS: nil, wallTimeS: Double($0)) }
        try store.record(progress: JobProgress(step: 25, loss: 0.04, lr: 0.1, imagesPerS: nil, etaS: nil), metrics: rows, for: id)
        try store.transition(id, to: .succeeded)
        var step = 0, eventID: Int64 = 0, pages = 0, seen: [Int] = []
        var last: HistoryPage
        repeat {
            last = try store.historyPage(jobID: id, afterStep: step, afterEventID: eventID, limit: 10)
            pages += 1
            seen += last.metrics.map(\.step)
            step = last.metrics.last?.step ?? step
            eventID = last.events.last?.id ?? eventID
            #expect(last.isLast || last.job == nil)
        } while !last.isLast
        #expect(seen == Array(1...25) && pages == 3)
        #expect(try last.job?.state == .succeeded && eventID == store.lastEventID(jobID: id))
        #expect(try store.lastEventID(jobID: "j-none") == 0)
    }

    @Test(arguments: Backend.underTest) func deleteRefusesRunningAndCascades(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let job = try store.submit(newJob()).job
        _ = try store.claimNextQueued()
        try store.record(progress: JobProgress(step: 1, loss: 1, lr: 0.1, imagesPerS: 5, etaS: 2),
                         metrics: [MetricRecord(jobID: job.id, step: 1, loss: 1, lr: 0.1, imagesPerS: 5, wallTimeS: 0.2)], for: job.id)
        try store.addCheckpoint(CheckpointRecord(jobID: job.id, step: 1, path: "c/1", bytes: 3, sha256: "ab", isFinal: false))
        #expect(throws: StoreError.self) { try store.delete(job.id) }
        try store.transition(job.id, to: .cancelled)
        #expect(try store.delete(job.id) == ["c/1"])
        #expect(try store.job(job.id) == nil)
        #expect(try store.metricCount(jobID: job.id) == 0)
        #expect(try store.checkpoints(jobID: job.id).isEmpty)
    }
}

@Suite("Store: history") struct HistoryTests {
    @Test(arguments: Backend.underTest) func metricsUpsertAndThin(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let id = try store.submit(newJob()).job.id
        func m(_ s: Int, _ loss: Double) -> MetricRecord { MetricRecord(jobID: id, step: s, loss: loss, lr: 0.01, imagesPerS: nil, wallTimeS: Double(s)) }
        try store.record(progress: JobProgress(step: 50, loss: 0, lr: 0, imagesPerS: nil, etaS: nil),
                         metrics: (1...50).map { m($0, Double($0)) }, for: id)
        // A resumed job logs steps 41… again: rows are replaced, never duplicated.
        try store.record(progress: JobProgress(step: 60, loss: 0, lr: 0, imagesPerS: nil, etaS: nil),
                         metrics: (41...60).map { m($0, -Double($0)) }, for: id)
        let all = try store.metrics(jobID: id)
        #expect(all.map(\.step) == Array(1...60) && all[45].loss == -46)
        #expect(try store.metrics(jobID: id, afterStep: 55).map(\.step) == [56, 57, 58, 59, 60])
        let thin = try store.metrics(jobID: id, maxPoints: 7)
        #expect(thin.count == 7 && thin.first?.step == 1 && thin.last?.step == 60)
        #expect(try store.job(id)?.step == 60)
        #expect(throws: StoreError.notFound("job zzz")) {
            try store.record(progress: JobProgress(step: 1, loss: 0, lr: 0, imagesPerS: nil, etaS: nil), metrics: [], for: "zzz")
        }
    }

    /// Thinning happens in SQL and keeps first and last, evenly spaced, also across gaps.
    @Test(arguments: Backend.underTest) func metricsThinInSQLOverALongHistory(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let id = try store.submit(newJob()).job.id
        func m(_ s: Int) -> MetricRecord { MetricRecord(jobID: id, step: s, loss: 1 / Double(s), lr: 0.01, imagesPerS: nil, wallTimeS: Double(s)) }
        // 100 000 steps, with a hole from 40 001 to 60 000.
        let steps = Array(1...40_000) + Array(60_001...100_000)
        try store.record(progress: JobProgress(step: 100_000, loss: 0, lr: 0, imagesPerS: nil, etaS: nil), metrics: steps.map(m), for: id)
        let thin = try store.metrics(jobID: id, maxPoints: 200)
        #expect(thin.count <= 200 && thin.count >= 150)
        #expect(thin.first?.step == 1 && thin.last?.step == 100_000)
        #expect(thin.map(\.step) == thin.map(\.step).sorted() && Set(thin.map(\.step)).count == thin.count)
        #expect(thin.allSatisfy { $0.loss == 1 / Double($0.step) && $0.imagesPerS == nil && $0.jobID == id })
        // Spacing: about (100 000 - 1) / 199 steps apart, except across the hole and just after it.
        let gaps = zip(thin.dropFirst(), thin).map { $0.step - $1.step }.filter { $0 < 10_000 }
        #expect(gaps.allSatisfy { $0 <= 505 } && gaps.filter { $0 < 500 }.count <= 1, "\(Set(gaps))")
        #expect(try store.metrics(jobID: id, afterStep: 99_990, maxPoints: 200).map(\.step) == Array(99_991...100_000))
        #expect(try store.metrics(jobID: id, maxPoints: 1).map(\.step) == [100_000])
        #expect(try store.metrics(jobID: id, afterStep: 100_000, maxPoints: 5).isEmpty)
    }

    @Test(arguments: Backend.underTest) func readersDoNotWaitForTheWriter(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let id = try store.submit(newJob()).job.id
        let writer = OpenWrite(store, settingStepOf: id, to: 99)
        let readDone = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var seen = -1
        DispatchQueue.global().async {
            seen = (try? store.job(id)?.step) ?? -2
            readDone.signal()
        }
        // The read finishes while the write transaction is still open, and sees the state before it.
        #expect(readDone.wait(timeout: .now() + 5) == .success)
        writer.commit()
        #expect(seen == 0)
    }

    @Test(arguments: Backend.underTest) func checkpointsEventsDatasetsAndEvaluations(_ backend: Backend) throws {
        let store = try makeStore(backend)
        let id = try store.submit(newJob()).job.id
        for s in [10, 20, 30] {
            try store.addCheckpoint(CheckpointRecord(jobID: id, step: s, path: "ck/\(s)", bytes: Int64(s), sha256: "x", isFinal: s == 30))
        }
        #expect(try store.checkpoints(jobID: id).map(\.step) == [10, 20, 30])
        #expect(try store.latestCheckpoint(jobID: id)?.isFinal == true)
        try store.deleteCheckpoint(jobID: id, step: 10)
        #expect(try store.checkpoint(jobID: id, step: 10) == nil)
        #expect(try store.checkpoint(jobID: id, step: 20)?.path == "ck/20")
        let events = try store.events(jobID: id)
        #expect(events.map(\.kind) == [.state, .checkpoint, .checkpoint, .checkpoint])
        #expect(try store.events(jobID: id, afterID: events[1].id!).count == 2)
        try store.upsert(dataset: DatasetRecord(id: "folder-a", kind: "folder", name: "A", path: "datasets/a", imageCount: 3,
                                                classesJSON: #"["x"]"#, imageSize: nil, licence: nil))
        #expect(try store.datasets().map(\.id) == ["folder-a"])
        #expect(try store.dataset("folder-a")?.imageCount == 3)
        let e = try store.add(evaluation: EvaluationRecord(jobID: id, datasetID: "synthetic", step: 30, resultJSON: "{}"))
        #expect(e.id != nil)
        #expect(try store.evaluations(jobID: id).map(\.id) == [e.id])
        #expect(store.probeWrite())
    }
}

/// The actions a job resource lists are exactly those the store carries out in its state.
@Suite("Store: job actions") struct JobActionTests {
    func job(in state: JobState, _ store: Store) throws -> String {
        let id = try store.submit(newJob(Int.random(in: 0..<1_000_000))).job.id
        if state == .queued { return id }
        while try store.claimNextQueued().map({ $0.id != id }) ?? false {}
        if state != .running { try store.transition(id, to: state) }
        return id
    }

    func perform(_ action: JobAction, on id: String, _ store: Store) -> Bool {
        do {
            switch action {
            case .pause: _ = try store.requestStop(id, .pause)
            case .cancel: _ = try store.requestStop(id, .cancel)
            case .resume: try store.transition(id, to: .queued, from: [.paused])
            case .delete: _ = try store.delete(id)
            }
            return true
        } catch {
            return false
        }
    }

    @Test(arguments: Backend.underTest, JobState.allCases)
    func listedActionsAreExactlyTheAcceptedOnes(_ backend: Backend, state: JobState) throws {
        let store = try makeStore(backend)
        for action in JobAction.allCases {
            let id = try job(in: state, store)
            #expect(perform(action, on: id, store) == state.actions.contains(action), "\(action) on a \(state) job")
        }
    }
}
