/** An image-spec platform as `os/architecture[/variant]` names it (`linux/amd64`, `linux/arm/v7`). */
export interface PlatformFilter {
  os: string;
  architecture: string;
  /** Absent: any variant. */
  variant?: string;
}

// image-spec: os and architecture are GOOS/GOARCH values; variant as "v7", "v8".
const PLATFORM_TEXT = /^([a-z0-9_.-]+)\/([a-z0-9_.-]+)(?:\/([a-z0-9_.-]+))?$/i;

/** `os/architecture[/variant]`, or null when the text is not of that form. */
export function parsePlatform(text: string): PlatformFilter | null {
  const match = PLATFORM_TEXT.exec(text);
  if (!match) return null;
  return { os: match[1], architecture: match[2], ...(match[3] ? { variant: match[3] } : {}) };
}

/** Whether an index entry's `platform` object is one of `filters`; without filters every platform is. */
export function platformMatches(platform: Record<string, unknown> | undefined, filters: readonly PlatformFilter[]): boolean {
  if (filters.length === 0) return true;
  if (!platform) return false;
  return filters.some(
    (filter) =>
      platform.os === filter.os &&
      platform.architecture === filter.architecture &&
      (filter.variant === undefined || platform.variant === filter.variant),
  );
}
