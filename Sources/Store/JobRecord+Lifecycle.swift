import Foundation

/// The lifecycle's rules, applied the same way by every backend inside its transaction: the
/// backend reads the row (locked), asks these what to write, and writes it.
extension JobRecord {
    /// The job after a move to `to`, or `.illegalTransition` when the lifecycle (or `from`, when
    /// given) does not allow it from the current state.
    func moved(to: JobState, from: Set<JobState>?, error: String?, now: Date = Date()) throws(StoreError) -> JobRecord {
        guard state.successors.contains(to), from?.contains(state) ?? true else {
            throw .illegalTransition(id: id, from: state, to: to)
        }
        var job = self
        job.state = to
        job.updatedAt = now
        if to == .running && job.startedAt == nil { job.startedAt = now }
        if to.isTerminal { job.finishedAt = now; job.etaS = nil }
        // A finished job keeps its last throughput; a waiting one has none.
        if to == .queued || to == .paused { job.imagesPerS = nil }
        if let error { job.error = error }
        return job
    }

    /// What `requestStop` does to this job: write the request on the running job's row, or move
    /// a waiting job to `cancelled` at once; throws when the state does not list the action.
    func stopDecision(_ kind: StopKind) throws(StoreError) -> StopDecision {
        let target: JobState = kind == .cancel ? .cancelled : .paused
        guard state.actions.contains(kind == .cancel ? .cancel : .pause) else {
            throw .illegalTransition(id: id, from: state, to: target)
        }
        switch (kind, state) {
        case (_, .running): return .request
        case (.cancel, .queued), (.cancel, .paused): return .cancelNow
        default: throw .illegalTransition(id: id, from: state, to: target)
        }
    }

    enum StopDecision {
        /// Write the request on the row; the trainer stops at its next step.
        case request
        /// Move to `cancelled` now.
        case cancelNow
    }
}

extension JobState {
    /// The state start-up moves an interrupted job to when a stop was asked before the crash.
    init(honouring request: StopKind) {
        self = request == .cancel ? .cancelled : .paused
    }
}

extension Store {
    /// The `data` of a state event.
    static func stateEventData(_ to: JobState, error: String?, reason: String?) -> [String: Any] {
        var data: [String: Any] = ["state": to.rawValue]
        if let error { data["error"] = error }
        if let reason { data["reason"] = reason }
        return data
    }

    static func checkpointEventData(_ c: CheckpointRecord) -> [String: Any] {
        ["step": c.step, "bytes": c.bytes, "sha256": c.sha256, "final": c.isFinal]
    }

    static func evaluationEventData(_ e: EvaluationRecord) -> [String: Any] {
        ["id": e.id ?? 0, "dataset": e.datasetID, "step": e.step]
    }

    /// The error a job fails with when it was taken from its trainer once too often: by a crash
    /// found at start-up, or by a lease that ran out (a worker that died, froze or lost the
    /// network).
    public static func interruptedTooOften(_ count: Int = maxInterruptions) -> String {
        "interrupted \(count) times (its trainer crashed or lost the job's lease); not resumed again"
    }
}
