using System.Threading.Tasks.Sources;

namespace Storage.Nbd.Connection;

/// <summary>
/// A reusable, allocation-free wake-up for one waiter. The owner arms it (<see cref="Arm"/>) under its own lock when it
/// decides to wait, publishes that it waits, and awaits <see cref="WaitAsync"/>; exactly one other party, having seen
/// the waiter published under the same lock, calls <see cref="Set"/>. With <c>inline</c> the waiter resumes on the
/// setter's thread (a reply sender that runs wherever a request completes); otherwise on the thread pool.
/// </summary>
internal sealed class AsyncSignal(bool inline) : IValueTaskSource
{
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = !inline };

    /// <summary>Prepares the next wait; only while no one can call <see cref="Set"/>.</summary>
    public void Arm() => _core.Reset();

    public ValueTask WaitAsync() => new(this, _core.Version);

    public void Set() => _core.SetResult(true);

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
