namespace Storage.Daemon;

/// <summary>A loop running in the background until disposed (a cluster node's resolver and lease loops).</summary>
internal sealed class BackgroundLoop : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _running;

    /// <param name="loop">The loop; it ends when its token fires.</param>
    public BackgroundLoop(Func<CancellationToken, Task> loop) => _running = loop(_stop.Token);

    /// <summary>Cancels the loop and waits for it to end.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _running.ConfigureAwait(false);
        _stop.Dispose();
    }
}
