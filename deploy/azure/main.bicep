// cnpg-rotator on Azure Functions (Flex Consumption, Linux, Node), with a system-assigned
// identity that reads the kubeconfig from Key Vault and writes the secrets of azurekv stores,
// and (second pass) Key Vault's SecretNearExpiry events routed to rotateOnNearExpiry.
//
//   az deployment group create -g RG -f deploy/azure/main.bicep -p name=cnpg-rotator-prod keyVaultName=pg-vault
//   npx node deploy/azure/build.ts && cd dist/azure && npm install --omit=dev && func azure functionapp publish cnpg-rotator-prod
//   az deployment group create -g RG -f deploy/azure/main.bicep -p name=cnpg-rotator-prod keyVaultName=pg-vault deployEventSubscription=true
//
// The Event Grid subscription names the function, which exists only once the code is published:
// hence the second pass.

@description('Function app name (globally unique).')
param name string
param location string = resourceGroup().location
@description('Existing Key Vault: holds secret cnpg-rotator-kubeconfig and the secrets of azurekv stores.')
param keyVaultName string
@description('Namespace of manifests that name none.')
param namespace string = 'default'
@description('NCRONTAB (six fields, UTC) of rotateTimer: tick at least once per refreshInterval, at a period dividing it.')
param schedule string = '0 0 3 * * *'
param pushSchedule string = '0 30 3 * * *'
@allowed(['20', '22'])
param nodeVersion string = '22'
param deployEventSubscription bool = false
@description('A fleet: planTimer and the Storage Queue trigger rotateQueue instead of rotateTimer (README, "Fleets").')
param fleet bool = false
@description('NCRONTAB of planTimer (a fleet): a quarter of the shortest refreshInterval, 1 minute to 1 hour.')
param planSchedule string = '0 */15 * * * *'

var storageName = take('st${uniqueString(resourceGroup().id, name)}', 24)
var deploymentContainer = 'app-package'
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false // the app reaches it with its identity only
  }
  resource blobs 'blobServices' = {
    name: 'default'
    resource package 'containers' = {
      name: deploymentContainer
    }
  }
  // A fleet's queue (the planner puts, rotateQueue's trigger takes) and the host's poison queue after maxDequeueCount (host.json).
  resource queues 'queueServices' = if (fleet) {
    name: 'default'
    resource work 'queues' = {
      name: 'cnpg-rotator-queue'
    }
    resource poison 'queues' = {
      name: 'cnpg-rotator-queue-poison'
    }
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: '${name}-plan'
  location: location
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'CNPG_ROTATOR_NAMESPACE', value: namespace }
        { name: 'CNPG_ROTATOR_SCHEDULE', value: schedule }
        { name: 'CNPG_ROTATOR_PUSH_SCHEDULE', value: pushSchedule }
        { name: 'CNPG_ROTATOR_FLEET', value: fleet ? '1' : '0' }
        { name: 'CNPG_ROTATOR_PLAN_SCHEDULE', value: planSchedule }
        // A Key Vault reference: the kubeconfig never appears in the app's configuration.
        { name: 'CNPG_ROTATOR_KUBECONFIG', value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=cnpg-rotator-kubeconfig)' }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: { type: 'SystemAssignedIdentity' }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: 40, instanceMemoryMB: 2048 }
      runtime: { name: 'node', version: nodeVersion }
    }
  }
}

resource appOnStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, app.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// A fleet: the planner puts messages, the trigger reads and deletes them (and moves poison ones), with the app's identity.
resource appOnQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (fleet) {
  name: guid(storage.id, app.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Reads the kubeconfig; creates, versions, tags and deletes the secrets azurekv stores write.
resource appOnVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, app.id, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource vaultEvents 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (deployEventSubscription) {
  name: '${keyVaultName}-events'
  location: location
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

resource nearExpiry 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (deployEventSubscription) {
  parent: vaultEvents
  name: 'cnpg-rotator-near-expiry'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${app.id}/functions/rotateOnNearExpiry'
        maxEventsPerBatch: 1
      }
    }
    filter: { includedEventTypes: ['Microsoft.KeyVault.SecretNearExpiry'] }
    eventDeliverySchema: 'EventGridSchema'
    // A failed run throws; Event Grid redelivers, and each step of a rotation is safe to re-run.
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
  }
}

output functionAppName string = app.name
output principalId string = app.identity.principalId
