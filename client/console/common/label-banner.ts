import { labelBanner, labelCodes } from '../../../shared/protocol/labels.js';
import type { Agreement, EnvelopeHeader } from '../../../shared/protocol/schemas.js';
import { h } from './dom.js';
import { language, t } from './i18n.js';

/**
 * The banner of a message's security label (PROTOCOL.md "Security labels"): the names the agreement
 * gives in the interface language, its codes in `data-label`. A message without a label shows
 * "(no label)" where the agreement defines labels, and nothing where it defines none.
 */
export function labelBannerText(agreement: Agreement, header: Pick<EnvelopeHeader, 'label'>): string | undefined {
  if (header.label === undefined) return agreement.labels === undefined ? undefined : t('label_none');
  return labelBanner(agreement, header.label, language());
}

export function labelBannerEl(agreement: Agreement, header: Pick<EnvelopeHeader, 'label'>): HTMLElement | null {
  const text = labelBannerText(agreement, header);
  if (text === undefined) return null;
  return h(
    'div',
    { class: `label-banner${header.label === undefined ? ' unlabelled' : ''}`, 'data-label': header.label === undefined ? '' : labelCodes(header.label) },
    t('label_banner', { label: text }),
  );
}
