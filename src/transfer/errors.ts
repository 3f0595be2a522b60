/** An export or import that cannot be done as asked (bad input, an unknown repository): its message is the whole story. */
export class TransferError extends Error {}
