namespace Storage.EtcdLoad;

/// <summary>One system under load. Both operations are safe to call concurrently.</summary>
internal interface ILoadTarget : IAsyncDisposable
{
    /// <summary>Writes key <c>bench/{key:D10}</c> with the configured value; throws if it is not acknowledged.</summary>
    Task PutAsync(int key, CancellationToken cancellationToken);

    /// <summary>Reads key <c>bench/{key:D10}</c> linearizably; throws on an error answer.</summary>
    Task GetAsync(int key, CancellationToken cancellationToken);

    /// <summary>Which server the requests go to.</summary>
    string Describe();
}

/// <summary>Thrown when the system under load answers a request with an error.</summary>
internal sealed class LoadRequestException(string message) : Exception(message);
