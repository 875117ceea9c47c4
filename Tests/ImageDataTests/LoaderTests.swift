import ImageData
import Synchronization
import Testing
import TensorCore

/// A dataset whose listed indices fail to decode, for substitution tests.
private struct FlakyDataset: ImageDataset {
    let base = SyntheticDataset(count: 12, imageSize: 8, seed: 4)
    let failing: Set<Int>
    var info: DatasetInfo { base.info }
    var count: Int { base.count }
    func image(at index: Int) throws -> RGBImage {
        if failing.contains(index) { throw ImageError.truncated(.png) }
        return base.image(at: index)
    }
    func label(at index: Int) -> Int? { base.label(at: index) }
}

@Suite("Loader")
struct LoaderTests {
    let data = SyntheticDataset(count: 10, imageSize: 20, seed: 2)

    private func batches(_ loader: Loader, _ n: Int) throws -> [ImageBatch] {
        defer { loader.close() }
        return try (0..<n).map { _ in try loader.next() }
    }

    @Test func shapesLabelsAndOrder() throws {
        let got = try batches(try Loader(dataset: data, batchSize: 4, imageSize: 16, seed: 1), 3)
        #expect(got.map(\.step) == [0, 1, 2])
        #expect(got[0].images.shape == [4, 3, 16, 16])
        #expect(got[0].labels == got[0].indices.map { $0 % 10 })
        #expect(got.allSatisfy { $0.dataWaitSeconds >= 0 && $0.images.scalars.allSatisfy(\.isFinite) })
    }

    @Test func restartAtAStepGivesTheSameBatches() throws {
        let full = try batches(try Loader(dataset: data, batchSize: 4, imageSize: 16, seed: 9), 24)
        let resumed = try batches(try Loader(dataset: data, batchSize: 4, imageSize: 16, seed: 9, startStep: 20), 4)
        for (a, b) in zip(full[20...], resumed) {
            #expect(a.step == b.step && a.indices == b.indices && a.images.scalars == b.images.scalars)
        }
    }

    @Test func workerCountDoesNotChangeTheBatches() throws {
        let one = try batches(try Loader(dataset: data, batchSize: 3, imageSize: 12, seed: 5, workers: 1), 9)
        let three = try batches(try Loader(dataset: data, batchSize: 3, imageSize: 12, seed: 5, workers: 3, prefetch: 2), 9)
        for (a, b) in zip(one, three) { #expect(a.indices == b.indices && a.images.scalars == b.images.scalars) }
        let direct = try Loader(dataset: data, batchSize: 3, imageSize: 12, seed: 5)
        defer { direct.close() }
        #expect(try direct.makeBatch(step: 7).images.scalars == one[7].images.scalars)
    }

    @Test func everyEpochIsAPermutationAcrossBatchBoundaries() throws {
        // Batches of 4 over 10 images: steps 0…4 hold epochs 0 and 1 exactly, split mid-batch.
        let got = try batches(try Loader(dataset: data, batchSize: 4, imageSize: 8, seed: 3), 5)
        let positions = got.flatMap(\.indices)
        #expect(positions[0..<10].sorted() == Array(0..<10))
        #expect(positions[10..<20].sorted() == Array(0..<10))
        #expect(Array(positions[0..<10]) != Array(positions[10..<20]))
        let other = try batches(try Loader(dataset: data, batchSize: 4, imageSize: 8, seed: 4), 3)
        #expect(other.flatMap(\.indices) != Array(positions[0..<12]))
    }

    @Test func closeStopsTheWorkers() throws {
        let loader = try Loader(dataset: data, batchSize: 2, imageSize: 8, seed: 1, workers: 2)
        _ = try loader.next()
        loader.close()
        loader.close()
        #expect(throws: LoaderError.closed) { try loader.next() }
    }

    @Test func undecodableImagesAreReplacedByTheNextOne() throws {
        let flaky = FlakyDataset(failing: [3, 4, 7])
        let got = try batches(try Loader(dataset: flaky, batchSize: 12, imageSize: 8, seed: 1), 1)[0]
        #expect(!got.indices.contains(3) && !got.indices.contains(4) && !got.indices.contains(7))
        #expect(got.indices.filter { $0 == 5 }.count == 3)  // 3 and 4 fall through to 5
        #expect(got.labels == got.indices.map { $0 % 10 })
    }

    @Test func aDatasetWithNothingDecodableIsAnError() throws {
        let broken = FlakyDataset(failing: Set(0..<12))
        let loader = try Loader(dataset: broken, batchSize: 2, imageSize: 8, seed: 1)
        defer { loader.close() }
        #expect(throws: LoaderError.self) { try loader.next() }
    }

    @Test func evaluationBatchesAreInOrder() throws {
        let eval = EvaluationBatches(dataset: data, batchSize: 4, imageSize: 16, limit: 10)
        #expect(eval.batchCount == 3)
        let all = try (0..<eval.batchCount).map { try eval.batch($0) }
        #expect(all.flatMap(\.indices) == Array(0..<10))
        #expect(all.last!.images.shape == [2, 3, 16, 16])
        #expect(all.flatMap { $0.labels! } == (0..<10).map { $0 % 10 })
        #expect(try eval.batch(1).images.scalars == all[1].images.scalars)
    }
}
