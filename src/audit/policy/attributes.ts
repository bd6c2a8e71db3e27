/**
 * @module Maps an AdmissionRequest to the attributes the API server's audit policy sees for the same request.
 *
 * The API server evaluates its policy on the request as the URL and the authenticated user describe it
 * (`authorizer.Attributes`, built from `RequestInfo`); a webhook sees the request after that, as admission
 * describes it. Where the two differ and the AdmissionRequest still says what the URL said, the mapping
 * recovers it; where it cannot, the table says so.
 *
 * | attribute   | from the AdmissionRequest                                   | what the API server's policy sees instead, where it differs |
 * |-------------|-------------------------------------------------------------|--------------------------------------------------------------|
 * | verb        | CREATE → create, UPDATE → update, DELETE → delete,           | `patch` for a PATCH, which admission shows as UPDATE (or as   |
 * |             | CONNECT → create                                             | CREATE when an apply creates the object): a `verbs: [patch]`  |
 * |             |                                                              | rule never matches here. `deletecollection` for one request   |
 * |             |                                                              | that admission shows as one DELETE per object. `get` for a    |
 * |             |                                                              | CONNECT made with GET (exec, attach and portforward over      |
 * |             |                                                              | WebSocket, as kubectl 1.30+ does, and proxy): admission does  |
 * |             |                                                              | not show the HTTP method, so CONNECT is taken as the POST.    |
 * |             |                                                              | `update` for a PUT that creates (admission: CREATE).          |
 * | apiGroup,   | requestResource and requestSubResource when requestResource | (same) — `resource` may be a converted equivalent under       |
 * | resource,   | is present, else resource and subResource ("" when absent)  | `matchPolicy: Equivalent`; requestResource is the URL's.      |
 * | subresource |                                                              |                                                              |
 * | name        | "" for a CREATE without subresource (it POSTs to the         | the URL's name for a create by PUT or by apply (PATCH), which |
 * |             | collection; admission takes the name from the object), else  | admission cannot tell from a POST: resourceNames rules do not |
 * |             | name ("" when absent)                                        | match those creates here.                                     |
 * | namespace   | "" for a CREATE of core `namespaces` without subresource     | (same)                                                        |
 * |             | (POST /api/v1/namespaces; admission gives the new name),     |                                                              |
 * |             | else namespace ("" when absent)                              |                                                              |
 * | username,   | userInfo.username and userInfo.groups ("" and [] when        | the authenticated user: the policy is evaluated before        |
 * | groups      | absent)                                                      | impersonation, admission shows the impersonated user. No      |
 * |             |                                                              | field of the AdmissionRequest names the impersonator, so this |
 * |             |                                                              | cannot be repaired: rules on users and userGroups select the  |
 * |             |                                                              | user acted as.                                                |
 *
 * A webhook never sees reads (get, list, watch) nor non-resource requests, so rules for those never match.
 */
import type { AdmissionFields, AdmissionResource, RequestAttributes } from './types.ts';

/** The operations admission sends, as the API verbs the policy tests. */
const VERB_OF_OPERATION: Readonly<Record<string, string>> = {
  CREATE: 'create',
  UPDATE: 'update',
  DELETE: 'delete',
  // A CONNECT (exec, attach, portforward, proxy) is taken as the POST its SPDY clients send.
  CONNECT: 'create',
};

/** The resource and subresource the caller's URL named. */
type UrlResource = { readonly resource: AdmissionResource | undefined; readonly subresource: string };

/** RequestAttributes over an AdmissionRequest's fields; each property is computed on first read, then kept. */
class AdmissionAttributes implements RequestAttributes {
  readonly #fields: AdmissionFields;
  #url: UrlResource | undefined;
  #username: string | undefined;
  #groups: readonly string[] | undefined;
  #verb: string | undefined;
  #namespace: string | undefined;
  #name: string | undefined;

  constructor(fields: AdmissionFields) {
    this.#fields = fields;
  }

  #urlResource(): UrlResource {
    if (this.#url === undefined) {
      const fields = this.#fields;
      const requested = fields.requestResource;
      // The two pairs go together: requestSubResource is the subresource of requestResource, and its absence
      // (omitempty) means the URL named none, whatever subResource says.
      this.#url =
        requested !== undefined
          ? { resource: requested, subresource: fields.requestSubResource ?? '' }
          : { resource: fields.resource, subresource: fields.subResource ?? '' };
    }
    return this.#url;
  }

  /** A create that POSTs to a collection: the URL names no object. */
  #isCollectionCreate(): boolean {
    return this.#fields.operation === 'CREATE' && this.#urlResource().subresource === '';
  }

  get username(): string {
    this.#username ??= this.#fields.userInfo.username ?? '';
    return this.#username;
  }

  get groups(): readonly string[] {
    this.#groups ??= this.#fields.userInfo.groups ?? [];
    return this.#groups;
  }

  get verb(): string {
    // An operation admission does not send today has no verb: a rule that lists verbs does not match it.
    this.#verb ??= VERB_OF_OPERATION[this.#fields.operation] ?? '';
    return this.#verb;
  }

  get namespace(): string {
    if (this.#namespace === undefined) {
      const url = this.#urlResource().resource;
      const namespaceCreate =
        this.#isCollectionCreate() && (url?.group ?? '') === '' && url?.resource === 'namespaces';
      this.#namespace = namespaceCreate ? '' : (this.#fields.namespace ?? '');
    }
    return this.#namespace;
  }

  get apiGroup(): string {
    return this.#urlResource().resource?.group ?? '';
  }

  get resource(): string {
    return this.#urlResource().resource?.resource ?? '';
  }

  get subresource(): string {
    return this.#urlResource().subresource;
  }

  get name(): string {
    this.#name ??= this.#isCollectionCreate() ? '' : (this.#fields.name ?? '');
    return this.#name;
  }
}

/**
 * Returns the attributes the API server's audit policy sees for the request `fields` describe (the table
 * above). Lazy: each property reads the fields it needs on first access, so a policy that tests only the
 * user never decodes the resource or the name.
 */
export function attributesFromAdmission(fields: AdmissionFields): RequestAttributes {
  return new AdmissionAttributes(fields);
}
