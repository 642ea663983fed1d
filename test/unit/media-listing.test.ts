import { describe, expect, it } from 'vitest';
import { parseListing } from '../../src/services/project/media/object-http.js';

const page = (body: string) => `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>${body}</ListBucketResult>`;

describe('parseListing (ListObjectsV2 pages read without the SDK client)', () => {
  it('reads one entry, many entries and none', () => {
    expect(parseListing(page('<IsTruncated>false</IsTruncated><Contents><Key>one</Key><ETag>"a"</ETag><Size>1</Size></Contents>'))).toEqual({
      objects: [{ key: 'one', etag: '"a"', size: 1 }],
      continuationToken: undefined,
    });
    const two = parseListing(page('<Contents><Key>a</Key><Size>0</Size><ETag>"x"</ETag></Contents><Contents><Key>b/c</Key><Size>12345678901</Size><ETag>"y-2"</ETag></Contents>'));
    expect(two.objects).toEqual([
      { key: 'a', size: 0, etag: '"x"' },
      { key: 'b/c', size: 12345678901, etag: '"y-2"' },
    ]);
    expect(parseListing(page('<KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>'))).toEqual({ objects: [], continuationToken: undefined });
  });

  it('decodes entities and keeps whitespace, control characters and unicode as they are', () => {
    const { objects } = parseListing(page('<Contents><Key>  a &amp; b &lt;c&gt; &#x41;&#66; \u0001 é/😀 </Key><ETag>&quot;e&quot;</ETag><Size>3</Size></Contents>'));
    expect(objects).toEqual([{ key: '  a & b <c> AB \u0001 é/😀 ', etag: '"e"', size: 3 }]);
  });

  it('gives the continuation token only for a truncated page', () => {
    expect(parseListing(page('<IsTruncated>true</IsTruncated><NextContinuationToken>tok/+=</NextContinuationToken>')).continuationToken).toBe('tok/+=');
    expect(parseListing(page('<IsTruncated>false</IsTruncated><NextContinuationToken>stale</NextContinuationToken>')).continuationToken).toBeUndefined();
  });

  it('refuses a document that is not a listing', () => {
    expect(() => parseListing('<Error><Code>AccessDenied</Code></Error>')).toThrow(/not a ListBucketResult/);
  });
});
