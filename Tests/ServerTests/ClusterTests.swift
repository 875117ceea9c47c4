import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import Store
import TestSupport

/// `mimserve serve` and `mimserve worker` processes on one PostgreSQL: a worker killed or
/// frozen mid-job, its job resumed by another.
@Suite("Cluster: API node, workers and leases", .serialized,
       .enabled(if: freshPostgresLocation() != nil, "MIMSERVE_TEST_POSTGRES is unset: no PostgreSQL server for these tests (make test starts one)"))
struct ClusterTests {
    /// Polls `done` until it holds; after `timeout` fails with `what` and what `state` says of
    /// the moment (so a failure on a starved machine tells which party held on to what).
    static func wait(_ what: String, timeout: TimeInterval = 120, state: () async throws -> String = { "" },
                     _ done: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try await !done() {
            if Date() > deadline { throw Failure("timed out waiting for \(what) \(try await state())") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// The job's row and state events, and each worker's gauges: what `wait` reports on a timeout.
    static func situation(_ store: Store, _ id: String, _ workers: [(String, MIMServeProcess)]) async throws -> String {
        let job = try store.job(id)
        var lines = ["job: \(job.map { "\($0.state.rawValue) at step \($0.step), lease \($0.worker ?? "none"), interrupted \($0.interruptions)×" } ?? "gone")"]
        for e in try store.events(jobID: id) where e.kind == .state {
            lines.append("event \(e.createdAt.timeIntervalSince1970): \(e.dataJSON)")
        }
        for (name, w) in workers {
            lines.append("worker \(name) (pid \(w.pid)): training \((try? await w.jobsTraining()).map(String.init) ?? "?") jobs, \((try? await w.stepsDone()).map(String.init) ?? "?") steps done")
        }
        return "\n" + lines.joined(separator: "\n")
    }

    /// Worker A is frozen (SIGSTOP) past its lease: worker B takes the job and finishes it from
    /// A's last checkpoint. A, thawed, trains no further step of it and writes nothing for it.
    @Test func aFrozenWorkerLosesItsJobAndWritesNothingMore() async throws {
        let location = try #require(freshPostgresLocation())
        let dataDir = Scratch.url("mimserve-workers")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let api = try await LiveServer.start {
            $0.database = location
            $0.dataDir = dataDir.path
            $0.trainerSlots = 0
        }
        defer { Task { await api.stop() } }
        let store = try Store(DatabaseLocation(parsing: location), migrations: MigrationSet.locate(dialect: .postgres))

        let a = try MIMServeProcess.worker(dataDir: dataDir, database: location, leaseSeconds: 2)
        defer { a.stop() }
        #expect(try await a.status("/readyz") == 200)
        #expect(try await a.status("/v1/jobs") == 404)
        // Long enough that it is still training when B has started; cancelled at the end.
        let id = try await api.submit(steps: 200_000, overrides: ["checkpoint_every": 50])
        try await Self.wait("a checkpoint by A") { try store.latestCheckpoint(jobID: id) != nil }

        // B's lease is long: should it lapse, A, thawed, could claim the job back, legitimately, and
        // never let go of it here. A 2 s lease did lapse on a starved machine, and so, it seems, did
        // a 30 s one in a CI run where this test took 308 s instead of 5 (everything about 60×
        // slower, its renewals every 10 s among them). B is never frozen: its lease need not lapse.
        let b = try MIMServeProcess.worker(dataDir: dataDir, database: location, leaseSeconds: 600)
        defer { b.stop() }
        #expect(try await b.status("/readyz") == 200)
        #expect(try await b.stepsDone() == 0)
        let situation = { try await Self.situation(store, id, [("A", a), ("B", b)]) }
        a.signal(SIGSTOP)
        let frozenAt = try #require(try store.job(id)).step
        try await Self.wait("B to take the job", state: situation) {
            try await b.stepsDone() > 0
        }
        let takeovers = try store.events(jobID: id).filter { $0.kind == .state && $0.dataJSON.contains("lease expired") }
        #expect(takeovers.count == 1)

        a.signal(SIGCONT)
        // A's heartbeat, its next step or its next write learns the job is gone, and its slot lets
        // go of it; from then on, while B trains on, A must not take a single step.
        try await Self.wait("A to let go of the job", state: situation) {
            try await a.jobsTraining() == 0
        }
        let aSteps = try await a.stepsDone()
        let bSteps = try await b.stepsDone()
        try await Self.wait("B to train 20 more steps", state: situation) {
            try await b.stepsDone() >= bSteps + 20
        }
        #expect(try await a.stepsDone() == aSteps)
        #expect(try await a.status("/readyz") == 200)
        _ = try await api.request("POST", "/v1/jobs/\(id)/cancel")
        let job = try await api.waitFor(id, states: ["cancelled", "failed", "succeeded"])
        #expect(job["state"] as? String == "cancelled", "\(job)")
        // B went on from A's last checkpoint, not from step 0, and every step has one row.
        let last = try #require(try store.job(id))
        #expect(frozenAt >= 50)
        #expect(try await b.stepsDone() < last.step)
        #expect(try store.metricCount(jobID: id) == last.step)
        #expect(try store.events(jobID: id).filter { $0.dataJSON.contains("lease expired") }.count == 1)
    }

    /// Follows a job's event stream on `node` from its first step (`after_step=0`: a stream
    /// without a resume point starts at the job's current step, and a busy machine may connect
    /// the follower after the first steps) until it ends, and returns its events.
    static func follow(_ id: String, on node: MIMServeProcess, session: URLSession) async throws -> [SSEEvent] {
        var r = URLRequest(url: URL(string: "/v1/jobs/\(id)/events?after_step=0", relativeTo: node.base)!)
        r.timeoutInterval = 600
        let (data, _) = try await session.data(for: r)
        return SSEEvent.parse(String(decoding: data, as: UTF8.self))
    }

    /// One API process and two worker processes share a PostgreSQL database and a data dir; six
    /// jobs are submitted, and the worker training one of them is SIGKILLed mid-job. All six
    /// succeed; every step of every job has exactly one metric row; the dead worker's job went
    /// on on the other worker from its last checkpoint, reproducing the steps it had lost; and a
    /// client following each job's stream on the API node saw its whole curve. The API node's
    /// keep-alives come once an hour, so its streams could only learn of the workers' writes
    /// from PostgreSQL's notifications.
    @Test func sixJobsOnTwoWorkersSurviveTheDeathOfOne() async throws {
        let location = try #require(freshPostgresLocation())
        let dataDir = Scratch.url("mimserve-cluster")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let api = try MIMServeProcess.serve(dataDir: dataDir, extraArguments: ["--database", location, "--trainer-slots", "0",
                                                                              "--sse-heartbeat", "3600"])
        defer { api.stop() }
        let store = try Store(DatabaseLocation(parsing: location), migrations: MigrationSet.locate(dialect: .postgres))
        // Checkpoints every 100 steps, metric rows every 50: rows past a checkpoint are committed
        // half-way between two, so the kill can land with steps to train again.
        let (total, every) = (500, 100)
        var ids: [String] = []
        for seed in 0..<6 {
            let job = try await api.post("/v1/jobs", ["method": "mae", "preset": "tiny", "total_steps": total, "batch_size": 8, "seed": seed,
                                                      "overrides": ["checkpoint_every": every, "keep_checkpoints": 100]])
            ids.append(try #require(job["id"] as? String, "\(job)"))
        }
        let streams = URLSession(configuration: {
            let c = URLSessionConfiguration.default
            c.httpMaximumConnectionsPerHost = 16
            return c
        }())
        let followers = ids.map { id in Task { try await Self.follow(id, on: api, session: streams) } }

        let a = try MIMServeProcess.worker(dataDir: dataDir, database: location, leaseSeconds: 2)
        defer { a.stop() }
        let b = try MIMServeProcess.worker(dataDir: dataDir, database: location, leaseSeconds: 2)
        defer { b.stop() }
        func trainedBy(_ w: MIMServeProcess, _ job: JobRecord) -> Bool { job.worker?.hasSuffix(":\(w.pid)") == true }

        // The victim: a job A trains that has a checkpoint past its first and steps left to lose.
        var victim: JobRecord?
        try await Self.wait("A to be mid-job past a checkpoint") {
            for id in ids {
                guard let job = try store.job(id), job.state == .running, trainedBy(a, job),
                      let c = try store.latestCheckpoint(jobID: id), c.step >= every, job.step > c.step,
                      job.step < total - 2 * every else { continue }
                victim = job
                return true
            }
            return false
        }
        let id = try #require(victim).id
        a.signal(SIGKILL)
        let killedAt = Date()
        a.process.waitUntilExit()
        // What A had committed: its checkpoints and the metric rows of the steps it took.
        let checkpointsByA = try store.checkpoints(jobID: id)
        let lastByA = try #require(checkpointsByA.last).step
        var before: [Int: Double] = [:]
        for m in try store.metrics(jobID: id) { before[m.step] = m.loss }

        var resumedAfter: Double?
        try await Self.wait("B to take the job", timeout: 300) {
            guard let job = try store.job(id) else { return false }
            if trainedBy(b, job) || job.state == .succeeded { resumedAfter = Date().timeIntervalSince(killedAt) }
            return resumedAfter != nil
        }
        for job in ids {
            try await Self.wait("job \(job) to end", timeout: 600) { try store.job(job).map { $0.state.isTerminal } ?? true }
        }
        print("cluster: worker killed at step \(before.keys.max() ?? 0) of job \(id) (last checkpoint \(lastByA)); "
              + "the other worker held it \(String(format: "%.2f", resumedAfter ?? -1)) s later (lease 2 s)")

        for job in ids {
            let row = try #require(try store.job(job))
            #expect(row.state == .succeeded, "\(job): \(row.state) \(row.error ?? "")")
            // One row per step: the metrics table's key is (job, step), so count and range say it.
            #expect(try store.metricCount(jobID: job) == total)
            #expect(try store.metrics(jobID: job).map(\.step) == Array(1...total))
        }
        let resumed = try #require(try store.job(id))
        #expect(resumed.interruptions == 1)
        #expect(try store.events(jobID: id).filter { $0.dataJSON.contains("lease expired") }.count == 1)
        // B went on from A's last checkpoint, not from step 0: every checkpoint up to it is still
        // the one A wrote (B would have rewritten it under its own lease), and B wrote the rest.
        let checkpoints = try store.checkpoints(jobID: id)
        for c in checkpoints {
            let writer = c.step <= lastByA ? a.pid : b.pid
            #expect(c.leaseOwner?.hasSuffix(":\(writer)") == true, "checkpoint \(c.step) written by \(c.leaseOwner ?? "nobody")")
        }
        #expect(checkpoints.map(\.step) == Array(stride(from: every, through: total, by: every)))
        // The steps B took again after that checkpoint reproduce A's exactly.
        var after: [Int: Double] = [:]
        for m in try store.metrics(jobID: id) { after[m.step] = m.loss }
        let replayed = before.keys.filter { $0 > lastByA }.sorted()
        for step in before.keys.sorted() { #expect(after[step] == before[step], "step \(step)") }
        print("cluster: \(replayed.count) steps after the checkpoint were trained again, all equal to the lost run's")

        // Each job's stream on the API node carried its whole curve, each step once, in order,
        // with the stored losses, and ended with its success.
        for (job, follower) in zip(ids, followers) {
            let events = try await follower.value
            struct Point: Decodable { let step: Int; let loss: Double }
            // JSONDecoder, not JSONSerialization: it reads the shortest round-trip digits back exactly.
            let metrics = try events.filter { $0.event == "metric" }.map { try JSONDecoder().decode(Point.self, from: Data($0.data.utf8)) }
            #expect(metrics.map(\.step) == Array(1...total), "\(job): \(metrics.count) metric events")
            let stored = Dictionary(uniqueKeysWithValues: try store.metrics(jobID: job).map { ($0.step, $0.loss) })
            let differing = metrics.filter { stored[$0.step] != $0.loss }
            #expect(differing.isEmpty, "\(job): streamed losses differ from the stored ones at \(differing.prefix(3).map { "\($0.step): \($0.loss) vs \(stored[$0.step] ?? .nan)" })")
            #expect(events.last { $0.event == "state" }?.json["state"] as? String == "succeeded")
        }
    }

    /// Pause, resume and cancel sent to the API process reach the worker process training the
    /// job: it checkpoints at the step it reached and lets go; resumed, a worker goes on from
    /// that checkpoint with one metric row per step; cancelled, it stops.
    @Test func pauseResumeAndCancelOnTheAPIReachTheWorker() async throws {
        let location = try #require(freshPostgresLocation())
        let dataDir = Scratch.url("mimserve-stops")
        defer { try? FileManager.default.removeItem(at: dataDir) }
        let api = try MIMServeProcess.serve(dataDir: dataDir, extraArguments: ["--database", location, "--trainer-slots", "0"])
        defer { api.stop() }
        let worker = try MIMServeProcess.worker(dataDir: dataDir, database: location, leaseSeconds: 30)
        defer { worker.stop() }
        let store = try Store(DatabaseLocation(parsing: location), migrations: MigrationSet.locate(dialect: .postgres))
        let job = try await api.post("/v1/jobs", ["method": "mae", "preset": "tiny", "total_steps": 200_000, "batch_size": 8,
                                                  "overrides": ["checkpoint_every": 100_000]])
        let id = try #require(job["id"] as? String, "\(job)")
        try await Self.wait("the worker to train it") { try await worker.stepsDone() > 0 }

        _ = try await api.post("/v1/jobs/\(id)/pause", [:])
        try await Self.wait("the pause") { try store.job(id)?.state == .paused }
        let paused = try #require(try store.job(id))
        #expect(try store.latestCheckpoint(jobID: id)?.step == paused.step && paused.step > 0)
        #expect(try await worker.jobsTraining() == 0)

        _ = try await api.post("/v1/jobs/\(id)/resume", [:])
        try await Self.wait("the worker to go on") { (try store.job(id)?.step ?? 0) > paused.step }
        _ = try await api.post("/v1/jobs/\(id)/cancel", [:])
        try await Self.wait("the cancel") { try store.job(id)?.state == .cancelled }
        let last = try #require(try store.job(id))
        #expect(try store.metricCount(jobID: id) == last.step && last.interruptions == 0)
        try await Self.wait("the worker to let go") { try await worker.jobsTraining() == 0 }
    }
}
