using System.Net.Sockets;

namespace Storage.Consensus;

/// <summary>The accept loop of the TCP listeners between nodes (consensus, metadata clients, node requests).</summary>
public static class Listening
{
    /// <summary>
    /// Accepts connections until <paramref name="stop"/> fires or the listener is closed, handing each to
    /// <paramref name="serve"/> on the thread pool. A failed accept (out of descriptors under a flood of connections)
    /// is retried after a pause instead of ending the loop: the port must outlive whoever floods it.
    /// </summary>
    public static async Task AcceptAsync<T>(Func<CancellationToken, ValueTask<T>> accept, Func<T, Task> serve, CancellationToken stop)
    {
        ArgumentNullException.ThrowIfNull(accept);
        ArgumentNullException.ThrowIfNull(serve);
        while (!stop.IsCancellationRequested)
        {
            T client;
            try
            {
                client = await accept(stop).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException) when (!stop.IsCancellationRequested)
            {
                await Task.Delay(100, CancellationToken.None).ConfigureAwait(false);
                continue;
            }
            catch (SocketException)
            {
                return;
            }
            _ = Task.Run(() => serve(client), CancellationToken.None);
        }
    }
}
