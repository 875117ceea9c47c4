import Testing
import TensorCore
@testable import Trainer

@Suite("Evaluation classifiers") struct EvaluationTests {
    /// Three Gaussian blobs in 6-D, `perClass` points each, labels 0…2.
    static func blobs(perClass: Int, seed: UInt64) -> (Matrix, [Int]) {
        var rng = RandomGenerator(seed: seed)
        var values: [Float] = [], labels: [Int] = []
        for i in 0..<(3 * perClass) {
            let label = i % 3
            for k in 0..<6 { values.append((k == 2 * label ? 3 : 0) + rng.normal()) }
            labels.append(label)
        }
        return (Matrix(rows: 3 * perClass, cols: 6, values: values), labels)
    }

    @Test func theLinearProbeSeparatesSeparableClasses() {
        let (train, trainLabels) = Self.blobs(perClass: 60, seed: 1)
        let (test, testLabels) = Self.blobs(perClass: 20, seed: 2)
        let accuracy = Evaluator.probeAccuracy(train: train, trainLabels: trainLabels, test: test, testLabels: testLabels,
                                               classes: 3, epochs: 200, lr: 0.05)
        // Bayes accuracy of these blobs is about 0.97; chance is 1/3.
        #expect(accuracy >= 0.9, "probe accuracy \(accuracy)")
        let knn = Evaluator.knnAccuracy(train: train, trainLabels: trainLabels, test: test, testLabels: testLabels, classes: 3)
        #expect(knn >= 0.85, "k-NN accuracy \(knn)")
    }
}
