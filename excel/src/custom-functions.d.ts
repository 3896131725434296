// The part of Excel's `CustomFunctions` types (@types/custom-functions-runtime) that the
// functions' signatures name, declared here so the build needs no Office typings. The
// name `CustomFunctions.StreamingInvocation` is what custom-functions-metadata looks for
// to mark a function as streaming.
declare namespace CustomFunctions {
  interface CancelableInvocation {
    onCanceled?: () => void;
  }
  interface StreamingInvocation<ResultType> extends CancelableInvocation {
    setResult(value: ResultType | Error): void;
  }
}
